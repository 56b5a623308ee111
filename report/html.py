"""``build-pairs report``: one self-contained HTML page to look at a finished run.

The page must open fast for a 100k-pair folder and stay small, so it never holds every pair:
aggregate figures (counts, edit-ratio and mask-fraction histograms, corruption sources) are computed
over all pairs by streaming only the small columns through pyarrow, batch by batch, while a seeded
sample of pair cards is chosen in the same pass (a uniform sample, plus a few pairs of every error
type, task and corruption source so rare classes can still be filtered to). Only the chosen rows'
texts and images are then read, and images become small JPEG thumbnails with the mask outlined.

Every text from the data reaches the page either through ``html.escape`` (the summary) or as JSON
that the script puts into the DOM with ``textContent`` (the cards), never as markup; a Content
Security Policy with a per-file nonce blocks any script or network request the page did not ship.

The figures are streamed by ``report.data``, the cards built by ``report.cards``; this module renders the
page (with ``report/assets/``) and writes it.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from report.cards import MAX_CARD_BYTES, build_cards, within_budget
from report.data import (
    FINE_BINS,
    REJECTS,
    SHOWN_BINS,
    PairStats,
    RejectStats,
    ReportError,
    ReportOptions,
    RunFolder,
    open_run,
    scan_pairs,
    scan_rejects,
)
from schemas.pair import ERROR_TYPES

ERROR_TYPE_HELP = {
    "false_finding": "the response reports a finding the reference does not have",
    "missed_finding": "the response omits or denies a finding the reference reports",
    "wrong_location": "the finding is placed at the wrong site or side",
    "wrong_severity": "the finding's severity or size is misstated",
    "false_comparison": "the response claims a change against a prior study that the reference does not",
    "missed_comparison": "the response omits a change against a prior study that the reference states",
    "wrong_answer": "the answer to the question is wrong",
}


@dataclass
class ReportResult:
    path: Path
    bytes: int
    pairs: int
    rejects: int
    cards: int
    seconds: float
    dropped: int = 0  # sampled cards left out to keep the page within MAX_CARD_BYTES


# ---------------------------------------------------------------- HTML


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    return (resources.files("report") / "assets" / name).read_text(encoding="utf-8")


def _json_for_script(obj) -> str:
    """JSON that cannot end its ``<script>`` element or open a comment: every ``<``, ``>`` and ``&``
    is a ``\\u`` escape (JSON.parse restores them)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _bars(counter: Counter, key: str, order: Iterable[str] = (), color_by_type: bool = False,
          shares: bool = True) -> str:
    """A horizontal bar chart as an HTML table (labels escaped, widths relative to the largest)."""
    if not counter:
        return '<p class="empty">none</p>'
    names = [n for n in order if n in counter] + sorted((n for n in counter if n not in set(order)),
                                                        key=lambda n: (-counter[n], n))
    top = max(counter.values()) or 1
    total = sum(counter.values())
    rows = []
    for name in names:
        n = counter[name]
        cls = f' et-{_e(name)}' if color_by_type and name in ERROR_TYPES else ""
        tip = ERROR_TYPE_HELP.get(name, "") if color_by_type else ""
        rows.append(
            f'<tr title="{_e(tip)}"><th>{_e(name)}</th><td class="bar"><span class="fill{cls}" '
            f'style="width:{100 * n / top:.1f}%"></span></td>'
            f'<td class="num" data-stat="{_e(key)}" data-key="{_e(name)}">{n:,}</td>'
            + (f'<td class="pct">{100 * n / max(1, total):.1f}%</td>' if shares else "") + "</tr>")
    return f'<table class="bars">{"".join(rows)}</table>'


def _median(fine: np.ndarray) -> float | None:
    total = int(fine.sum())
    if total == 0:
        return None
    i = int(np.searchsorted(np.cumsum(fine), (total + 1) / 2))
    return (i + 0.5) / FINE_BINS


def _histogram_svg(fine: np.ndarray, label: str) -> str:
    """Counts in SHOWN_BINS bins over [0, 1] as an inline SVG (each bar's count in its tooltip)."""
    bins = fine.reshape(SHOWN_BINS, -1).sum(axis=1)
    total = int(bins.sum())
    if total == 0:
        return '<p class="empty">no values</p>'
    w, h, pad = 360, 120, 18
    top = int(bins.max())
    bw = w / SHOWN_BINS
    bars = []
    for i, n in enumerate(bins.tolist()):
        bh = (h - pad) * n / top
        lo, hi = i / SHOWN_BINS, (i + 1) / SHOWN_BINS
        bars.append(f'<rect x="{i * bw + 1:.1f}" y="{h - pad - bh:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}">'
                    f"<title>{lo:.2f}–{hi:.2f}: {n:,}</title></rect>")
    ticks = "".join(f'<text x="{x * w:.0f}" y="{h - 4}" text-anchor="{a}">{x:g}</text>'
                    for x, a in ((0, "start"), (0.5, "middle"), (1, "end")))
    med = _median(fine)
    note = f"n = {total:,}" + (f", median ≈ {med:.3f}" if med is not None else "")
    return (f'<svg class="hist" viewBox="0 0 {w} {h}" role="img" aria-label="{_e(label)}">{"".join(bars)}'
            f'{ticks}</svg><p class="note">{_e(note)}</p>')


def _panel(title: str, body: str, hint: str = "") -> str:
    hint_html = f'<p class="hint">{_e(hint)}</p>' if hint else ""
    return f'<div class="panel"><h3>{_e(title)}</h3>{hint_html}{body}</div>'


def render_html(run: RunFolder, stats: PairStats, rejects: RejectStats, cards: list[dict],
                options: ReportOptions, counted_pairs: int, dropped: int = 0) -> str:
    m = run.manifest
    counts = m.get("counts") or {}
    warnings = []
    if counts.get("pairs") is not None and counts.get("pairs") != counted_pairs:
        warnings.append(f"manifest says {counts.get('pairs')} pairs, the shards hold {counted_pairs}")
    if counts.get("rejects") is not None and counts.get("rejects") != rejects.rejects:
        warnings.append(f"manifest says {counts.get('rejects')} rejects, {REJECTS} holds {rejects.rejects}")
    if dropped:
        warnings.append(f"{dropped} sampled card(s) left out to keep the page under {MAX_CARD_BYTES / 1e6:.0f} MB")
    bad_edits = sum(1 for c in cards if not c["edits_ok"])
    if bad_edits:
        warnings.append(f"{bad_edits} sampled pair(s) have edits that do not turn rejected into chosen")

    count_cells = "".join(
        f'<div class="count"><span class="n" data-count="{k}">{_e(f"{counts[k]:,}" if isinstance(counts.get(k), int) else counts.get(k, "?"))}</span>'
        f'<span class="k">{k}</span></div>' for k in ("samples", "responses", "pairs", "rejects"))
    meta_line = " · ".join(_e(x) for x in (
        str(run.root.resolve()), f"pipeline {m.get('pipeline_version', '?')}",
        f"schema {m.get('schema_version', '?')}", f"tokenizer {m.get('tokenizer', '?')}",
        f"config {m.get('config_hash', '?')}", "generated " + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    edit_hist = {n if n < 10 else "10+": c for n, c in sorted(stats.edits_per_pair.items())}
    panels = [
        _panel("Error types (pairs)", _bars(stats.pairs_by_error, "pairs_by_error", ERROR_TYPES, True),
               "pairs with at least one edit of the type"),
        _panel("Error types (edits)", _bars(stats.edits_by_error, "edits_by_error", ERROR_TYPES, True)),
        _panel("Tasks", _bars(stats.tasks, "tasks")),
        _panel("On-policy side", _bars(stats.on_policy, "on_policy"),
               "rejected: the sampled response was corrected; chosen: an error was injected into it"),
        _panel("Edit ratio", _histogram_svg(stats.edit_ratio_hist, "edit ratio histogram"),
               "share of the longer response's characters the edits touch"),
        _panel("Edits per pair", _bars(Counter({str(k): v for k, v in edit_hist.items()}), "edits_per_pair",
                                       [str(k) for k in edit_hist])),
        _panel("Mask fraction", _histogram_svg(stats.mask_fraction_hist, "mask fraction histogram"),
               "share of the image the corruption covers"),
        _panel("Images", _bars(stats.images, "images", ["clean and corrupted", "clean only", "text only"])),
        _panel("Corruption sources", _bars(stats.sources, "sources")),
        _panel("Corruption methods", _bars(stats.methods, "methods")),
        _panel("Why no corrupted image", _bars(stats.no_image_reasons, "no_image_reasons")),
        _panel("Rejects by reason", _bars(rejects.reasons, "reject_reasons")),
        _panel("Rejects by stage", _bars(rejects.stages, "reject_stages")),
    ]
    seconds = (m.get("stats") or {}).get("seconds") or {}
    timing = ""
    if seconds:
        timing = _panel("Run time (s)", _bars(Counter({k: v for k, v in seconds.items()
                                                      if isinstance(v, int | float)}), "seconds",
                                         shares=False), "stage timings overlap (process includes its parts)")
    data = {
        "cards": cards, "rejects": rejects.rows,
        "error_types": list(ERROR_TYPES), "error_help": ERROR_TYPE_HELP,
        "totals": {"pairs": counted_pairs, "rejects": rejects.rejects,
                   "pairs_by_error": dict(stats.pairs_by_error), "tasks": dict(stats.tasks),
                   "reject_reasons": dict(rejects.reasons)},
        "options": {"sample": options.sample, "per_class": options.per_class, "seed": options.seed},
    }
    nonce = secrets.token_urlsafe(18)
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
           "base-uri 'none'; form-action 'none'")
    legend = "".join(f'<span class="chip et-{t}" title="{_e(ERROR_TYPE_HELP[t])}">{_e(t)}</span>'
                     for t in ERROR_TYPES)
    warn_html = "".join(f'<p class="warn">{_e(w)}</p>' for w in warnings)
    config = json.dumps(m.get("config") or {}, indent=2, sort_keys=True, default=str)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>medpref report · {_e(run.root.resolve().name)}</title>
<style>{_asset("report.css")}</style></head>
<body>
<header><h1>medpref pair report</h1><p class="sub">{meta_line}</p></header>
<section id="summary"><div class="counts">{count_cells}</div>{warn_html}
<div class="grid">{"".join(panels)}{timing}</div>
<details><summary>Run configuration</summary><pre>{_e(config)}</pre></details></section>
<section id="pairs"><h2>Pairs <span class="sub" id="pairs-note"></span></h2>
<div class="legend">{legend}<span class="chip del">removed from rejected</span><span class="chip ins">inserted in chosen</span></div>
<div class="controls">
<label>error type <select id="f-type"><option value="">all</option></select></label>
<label>task <select id="f-task"><option value="">all</option></select></label>
<label>on-policy <select id="f-policy"><option value="">all</option></select></label>
<label>images <select id="f-img"><option value="">all</option><option value="yes">with images</option><option value="no">text only</option></select></label>
<label><input type="checkbox" id="f-uniform"> uniform sample only</label>
<label>search <input type="search" id="f-text" placeholder="id or text"></label>
<label>view <select id="f-view"><option value="diff">diff</option><option value="side">side by side</option></select></label>
</div>
<div class="pager" id="pager-top"></div><div id="cards"><noscript>The pair cards need JavaScript.</noscript></div>
<div class="pager" id="pager-bottom"></div></section>
<section id="rejects"><h2>Rejects <span class="sub" id="rejects-note"></span></h2>
<div class="controls"><label>reason <select id="f-reason"><option value="">all</option></select></label></div>
<table class="rejects"><thead><tr><th>sample</th><th>response</th><th>stage</th><th>reason</th><th>detail</th></tr></thead>
<tbody id="reject-rows"></tbody></table><div class="pager" id="pager-rejects"></div></section>
<script id="report-data" type="application/json">{_json_for_script(data)}</script>
<script nonce="{nonce}">{_asset("report.js")}</script>
</body></html>
"""


# ---------------------------------------------------------------- entry point


def write_report(out_dir: str | Path, dest: str | Path | None = None,
                 options: ReportOptions | None = None) -> ReportResult:
    """Write the HTML report of the run in ``out_dir`` to ``dest`` (default ``OUT_DIR/report.html``)."""
    t0 = time.perf_counter()
    options = options or ReportOptions()
    if options.sample < 0 or options.per_class < 0 or options.thumb < 16:
        raise ReportError("sample and per-class counts must be >= 0 and the thumbnail size >= 16 px")
    run = open_run(out_dir)
    dest = Path(dest) if dest is not None else run.root / "report.html"
    try:
        counted = sum(pq.ParquetFile(s).metadata.num_rows for s in run.shards)
        stats, sampler = scan_pairs(run.shards, options)
        rejects = scan_rejects(run.rejects, options)
        cards, dropped = within_budget(build_cards(run.shards, sampler.chosen(), options.thumb))
    except (pa.ArrowException, OSError, KeyError) as e:
        raise ReportError(f"{run.root}: cannot read the run: {' '.join(str(e).split())}") from e
    page = render_html(run, stats, rejects, cards, options, counted, dropped)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(dest)
    return ReportResult(dest, dest.stat().st_size, stats.pairs, rejects.rejects, len(cards),
                        time.perf_counter() - t0, dropped)
