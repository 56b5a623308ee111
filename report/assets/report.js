// medpref report: renders the embedded pair cards and reject rows one page at a time.
// Every text from the data goes into the page through textContent or a title attribute, never as markup.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const PAGE = 20, REJECT_PAGE = 50;
  const KNOWN = new Set(DATA.error_types);
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const typeClass = (t) => "et-" + (KNOWN.has(t) ? t : "other");
  const fmt = (n) => Number(n).toLocaleString("en-US");

  function fillSelect(select, values, totals) {
    const counts = new Map();
    for (const v of values) counts.set(v, (counts.get(v) || 0) + 1);
    for (const [value, n] of [...counts.entries()].sort((a, b) => b[1] - a[1])) {
      const total = totals && totals[value] !== undefined ? " of " + fmt(totals[value]) : "";
      const opt = el("option", null, value + " (" + fmt(n) + total + ")");
      opt.value = value;
      select.appendChild(opt);
    }
  }

  // ------------------------------------------------------------------ pairs
  const cards = DATA.cards;
  const state = { page: 0, list: cards };
  const hasImages = (c) => c.images && c.images.some((im) => im[0] || im[1]);
  fillSelect($("f-type"), cards.flatMap((c) => c.types), DATA.totals.pairs_by_error);
  fillSelect($("f-task"), cards.map((c) => String(c.task)), DATA.totals.tasks);
  fillSelect($("f-policy"), cards.map((c) => String(c.on_policy)));

  function matches(c) {
    const type = $("f-type").value, task = $("f-task").value, pol = $("f-policy").value;
    const img = $("f-img").value, q = $("f-text").value.trim().toLowerCase();
    if (type && !c.types.includes(type)) return false;
    if (task && String(c.task) !== task) return false;
    if (pol && String(c.on_policy) !== pol) return false;
    if (img === "yes" && !hasImages(c)) return false;
    if (img === "no" && hasImages(c)) return false;
    if ($("f-uniform").checked && !c.uniform) return false;
    if (q) {
      if (c.hay === undefined) {
        c.hay = [c.id, c.sample, c.prompt, c.chosen || "", c.rejected || "", ...c.segs.map((s) => s[1])]
          .join("\n").toLowerCase();
      }
      const hay = c.hay;
      if (!hay.includes(q)) return false;
    }
    return true;
  }

  function editTitle(c, i) {
    const e = c.edits[i] || ["?", "", ""];
    const help = DATA.error_help[e[0]] || "";
    return e[0] + (help ? ": " + help : "") + "\nrejected: \u201c" + e[1] + "\u201d\nchosen: \u201c" + e[2] + "\u201d";
  }

  function diffText(c, keep) {
    // keep: the segment kinds to show (0 shared, 1 removed, 2 inserted, 3 truncation note)
    const box = el("div", "text diff");
    for (const [kind, text, idx] of c.segs) {
      if (!keep.includes(kind)) continue;
      if (kind === 0) box.appendChild(document.createTextNode(text));
      else if (kind === 3) box.appendChild(el("span", "trunc", text));
      else {
        const e = c.edits[idx] || ["other"];
        const node = el(kind === 1 ? "del" : "ins", typeClass(e[0]), text);
        node.title = editTitle(c, idx);
        box.appendChild(node);
      }
    }
    return box;
  }

  function figure(src, caption) {
    const fig = el("figure");
    if (src) {
      const img = el("img");
      img.src = src;
      img.alt = caption;
      img.loading = "lazy";
      fig.appendChild(img);
    } else {
      fig.appendChild(el("div", "noimg", "(no image)"));
    }
    fig.appendChild(el("figcaption", null, caption));
    return fig;
  }

  function renderCard(c) {
    const card = el("article", "card");
    card.dataset.pairId = c.id;
    const head = el("div", "head");
    head.appendChild(el("span", "sid", c.sample));
    head.appendChild(el("span", null, "pair " + String(c.id).slice(0, 12)));
    head.appendChild(el("span", null, "task " + c.task));
    head.appendChild(el("span", null, "on-policy: " + c.on_policy));
    for (const t of c.types) {
      const chip = el("span", "chip " + typeClass(t), t);
      chip.title = DATA.error_help[t] || "";
      head.appendChild(chip);
    }
    if (!c.edits_ok) head.appendChild(el("span", "bad", "edit offsets do not match the texts"));
    card.appendChild(head);

    const main = el("div");
    main.appendChild(el("div", "label", "prompt"));
    main.appendChild(el("div", "text prompt", c.prompt));
    const view = $("f-view").value;
    if (!c.edits_ok) {
      const cols = el("div", "cols");
      for (const [name, text] of [["rejected", c.rejected], ["chosen", c.chosen]]) {
        const col = el("div");
        col.appendChild(el("div", "label", name));
        col.appendChild(el("div", "text", text));
        cols.appendChild(col);
      }
      main.appendChild(cols);
    } else if (view === "side") {
      const cols = el("div", "cols");
      for (const [name, keep] of [["rejected", [0, 1, 3]], ["chosen", [0, 2, 3]]]) {
        const col = el("div");
        col.appendChild(el("div", "label", name));
        col.appendChild(diffText(c, keep));
        cols.appendChild(col);
      }
      main.appendChild(cols);
    } else {
      main.appendChild(el("div", "label", "rejected \u2192 chosen (" + c.edits.length + " edit" +
        (c.edits.length === 1 ? "" : "s") + ")"));
      main.appendChild(diffText(c, [0, 1, 2, 3]));
    }
    main.appendChild(el("div", "label", "reference"));
    main.appendChild(el("div", "text ref", c.reference));
    const more = el("details");
    more.appendChild(el("summary", null, "meta"));
    more.appendChild(el("pre", null, c.meta));
    main.appendChild(more);
    card.appendChild(main);

    const side = el("div", "imgs");
    const corr = c.corruption || {};
    if (c.images && c.images.length) {
      c.images.forEach((im, j) => {
        const pair = el("div", "imgpair");
        pair.appendChild(figure(im[0], "clean" + (c.images.length > 1 ? " " + (j + 1) : "")));
        pair.appendChild(figure(im[1], im[1] ? "corrupted (" + corr.method + ")" : "no corrupted image"));
        pair.title = im[2] || "";
        side.appendChild(pair);
      });
      if (c.n_images > c.images.length) side.appendChild(el("div", "noimg", "+" + (c.n_images - c.images.length) + " more image(s)"));
      const bits = [];
      if (corr.source) bits.push("mask from " + corr.source);
      if (corr.mask_fraction !== null && corr.mask_fraction !== undefined) bits.push("covers " + (100 * corr.mask_fraction).toFixed(1) + "%");
      if (bits.length) side.appendChild(el("div", "noimg", bits.join(", ")));
    } else {
      side.appendChild(el("div", "noimg", "text only" + (corr.reason ? ": " + corr.reason : "")));
    }
    card.appendChild(side);
    return card;
  }

  function pager(box, page, pages, onPage) {
    box.replaceChildren();
    const prev = el("button", null, "\u2039 prev");
    prev.disabled = page <= 0;
    prev.addEventListener("click", () => onPage(page - 1));
    const next = el("button", null, "next \u203a");
    next.disabled = page >= pages - 1;
    next.addEventListener("click", () => onPage(page + 1));
    box.append(prev, el("span", "page", "page " + (pages ? page + 1 : 0) + " of " + pages), next);
  }

  function renderPairs() {
    const pages = Math.ceil(state.list.length / PAGE);
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    const box = $("cards");
    box.replaceChildren();
    for (const c of state.list.slice(state.page * PAGE, (state.page + 1) * PAGE)) box.appendChild(renderCard(c));
    if (!state.list.length) box.appendChild(el("p", "empty", "no sampled pair matches"));
    const go = (p) => { state.page = p; renderPairs(); };
    pager($("pager-top"), state.page, pages, go);
    pager($("pager-bottom"), state.page, pages, (p) => { go(p); $("pairs").scrollIntoView(); });
    $("pairs-note").textContent = fmt(state.list.length) + " shown of " + fmt(cards.length) +
      " sampled cards (" + fmt(DATA.totals.pairs) + " pairs in the run)";
    $("pairs").dataset.matching = String(state.list.length);
  }

  function applyFilters() {
    state.list = cards.filter(matches);
    state.page = 0;
    renderPairs();
  }
  for (const id of ["f-type", "f-task", "f-policy", "f-img", "f-uniform", "f-text"]) {
    $(id).addEventListener(id === "f-text" ? "input" : "change", applyFilters);
  }
  $("f-view").addEventListener("change", renderPairs);

  // ------------------------------------------------------------------ rejects
  const rejects = DATA.rejects;
  const rstate = { page: 0, list: rejects };
  fillSelect($("f-reason"), rejects.map((r) => String(r.reason)), DATA.totals.reject_reasons);

  function renderRejects() {
    const pages = Math.ceil(rstate.list.length / REJECT_PAGE);
    rstate.page = Math.max(0, Math.min(rstate.page, pages - 1));
    const body = $("reject-rows");
    body.replaceChildren();
    for (const r of rstate.list.slice(rstate.page * REJECT_PAGE, (rstate.page + 1) * REJECT_PAGE)) {
      const tr = el("tr");
      tr.append(el("td", null, r.sample_id), el("td", null, r.response_index), el("td", null, r.stage),
        el("td", null, r.reason), el("td", "detail", r.detail));
      body.appendChild(tr);
    }
    pager($("pager-rejects"), rstate.page, pages, (p) => { rstate.page = p; renderRejects(); });
    $("rejects-note").textContent = fmt(rstate.list.length) + " shown of " + fmt(rejects.length) +
      " sampled rows (" + fmt(DATA.totals.rejects) + " rejects in the run)";
  }
  $("f-reason").addEventListener("change", () => {
    const reason = $("f-reason").value;
    rstate.list = reason ? rejects.filter((r) => String(r.reason) === reason) : rejects;
    rstate.page = 0;
    renderRejects();
  });

  renderPairs();
  renderRejects();
  document.body.dataset.readyMs = String(Math.round(performance.now()));  // navigation start -> rendered
  document.body.dataset.ready = "1";
})();
