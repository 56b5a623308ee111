"""``build-pairs report``: the HTML page of a finished run, checked in headless Chromium.

A run is built once per session from the shared data (NIH reports with images, IU generations
text-only, VQA-RAD questions without responses, which become rejects), in small shards so the
report reads several files and row groups. The browser tests drive Chromium through the DevTools
protocol (a small websocket client below) to read the page, catch console errors and network
requests, and take a screenshot; they skip, saying why, when Chromium is not installed.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from report.cards import build_cards, diff_segments, thumbnail, within_budget
from report.data import ReportError, ReportOptions, edit_ratios, open_run, scan_pairs
from report.html import write_report

CHROMIUM = os.environ.get("MEDPREF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAS_CHROMIUM = Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)
needs_chromium = pytest.mark.skipif(
    not HAS_CHROMIUM, reason="Chromium is not installed (apt-get install chromium, or .ci/install-chromium.sh)")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--remote-debugging-port=0"]
from data_paths import SHARED as DATA  # noqa: E402 - the full shared data, else the committed excerpts

PAYLOAD = ('<script>document.title="pwned"</script><img src=x onerror="document.body.dataset.pwned=1">'
           '</script><!-- & "quoted" \u2028')


# ---------------------------------------------------------------- a run from the shared data


def _import(fmt: str, folder: str, dest: Path, limit: int) -> list[dict]:
    from pipeline.importers import import_samples

    source = DATA / folder
    if not source.exists():
        pytest.skip(f"shared data not found: {source}")
    return list(itertools.islice(import_samples(fmt, source, manifest_dir=dest.parent), limit))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A finished run: 4 NIH samples (7 responses each, images), 40 IU samples, 12 VQA-RAD questions."""
    from pipeline.config import load_config
    from pipeline.importers import write_manifest
    from pipeline.runner import run

    root = tmp_path_factory.mktemp("report-run")
    samples = root / "samples.jsonl"
    records = (_import("nih-reports", "nih_cxr14_rexrank_model_reports", samples, 4)
               + _import("iu-generations", "iu_xray_model_generations", samples, 40)
               + _import("vqa-rad", "vqa_rad", samples, 12))
    write_manifest(records, samples)
    out = root / "out"
    run(samples, out, load_config(None, {"output.shard_size": 30}), progress=False)
    return out


@pytest.fixture(scope="session")
def manifest(run_dir) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def report(run_dir, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("report") / "report.html"
    write_report(run_dir, dest)
    return dest


def _all_pairs(run_dir: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(s, columns=["pair_id", "task", "chosen", "rejected", "edits",
                                                      "error_types", "corruption"])
                            for s in sorted(run_dir.glob("shard-*.parquet")))


# ---------------------------------------------------------------- a minimal DevTools protocol client


class Browser:
    """Headless Chromium driven over the DevTools protocol: one page, its console errors, its
    network requests. Events are collected while waiting for command replies."""

    def __init__(self, tmp: Path, width: int = 1280, height: int = 1600):
        profile = tmp / "chromium-profile"
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a stale one names a dead port
        self.log = (tmp / "chromium.log").open("wb")
        self.proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.ws = None
        try:
            self._connect(profile / "DevToolsActivePort", width, height)
        except BaseException:
            self.close()
            raise

    def _connect(self, port_file: Path, width: int, height: int) -> None:
        from websockets.sync.client import connect

        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start (see {self.log.name})")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10)
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.session = None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def send(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: Path, timeout: float = 20) -> float:
        """Navigate to the file and wait until the report script marks the page ready; seconds taken."""
        start = time.monotonic()
        self.send("Page.navigate", url=path.resolve().as_uri())
        while time.monotonic() - start < timeout:
            if self.eval("document.readyState === 'complete' && document.body && document.body.dataset.ready") == "1":
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"the report did not finish rendering in {timeout} s; errors: {self.errors()}")

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser log errors (CSP violations included)."""
        self.eval("1")  # drain events that arrived since the last command
        out = []
        for ev in self.events:
            method, p = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(json.dumps(p.get("args", []))[:500])
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", "")[:500])
        return out

    def requests(self) -> list[str]:
        return [ev["params"]["request"]["url"] for ev in self.events
                if ev.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, dest: Path) -> np.ndarray:
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        dest.write_bytes(data)
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def close(self) -> None:
        try:
            if self.ws is not None:
                try:
                    self.send("Browser.close")
                except Exception:  # noqa: BLE001 - the browser may already be gone
                    pass
                self.ws.close()
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.log.close()


@pytest.fixture
def browser(tmp_path):
    if not HAS_CHROMIUM:
        pytest.skip("Chromium is not installed (apt-get install chromium, or .ci/install-chromium.sh)")
    b = Browser(tmp_path)
    yield b
    b.close()


# ---------------------------------------------------------------- the page in a browser


@needs_chromium
def test_report_opens_without_errors_and_shows_the_manifest_counts(browser, report, manifest, tmp_path):
    seconds = browser.open(report)
    assert seconds < 5, f"the report took {seconds:.1f} s to render"
    assert browser.errors() == []
    outside = [u for u in browser.requests() if not u.startswith(("file:", "data:"))]
    assert outside == [], f"the report made network requests: {outside}"

    shown = browser.eval("Object.fromEntries([...document.querySelectorAll('[data-count]')]"
                         ".map(e => [e.dataset.count, Number(e.textContent.replace(/,/g, ''))]))")
    assert shown == {k: manifest["counts"][k] for k in ("samples", "responses", "pairs", "rejects")}
    stat_sums = browser.eval("""(() => { const s = {};
        for (const e of document.querySelectorAll('[data-stat]'))
            s[e.dataset.stat] = (s[e.dataset.stat] || 0) + Number(e.textContent.replace(/,/g, ''));
        return s; })()""")
    assert stat_sums["tasks"] == manifest["counts"]["pairs"]
    assert stat_sums["reject_reasons"] == manifest["counts"]["rejects"]
    assert browser.eval("document.querySelectorAll('#summary .warn').length") == 0

    cards = browser.eval("document.querySelectorAll('#cards .card').length")
    assert cards == min(20, manifest["counts"]["pairs"])
    drawn = browser.eval("[...document.querySelectorAll('#cards img')].filter(i => i.complete && "
                         "i.naturalWidth > 0).length")
    assert drawn > 0, "no thumbnail was decoded"
    assert browser.eval("document.querySelectorAll('#cards del, #cards ins').length") > 0
    assert browser.eval("document.querySelectorAll('#reject-rows tr').length") == min(
        50, manifest["counts"]["rejects"])

    image = browser.screenshot(tmp_path / "report.png")
    assert image is not None and image.shape[1] == 1280
    assert float(image.std()) > 10, "the screenshot is blank"


@needs_chromium
def test_filters_and_paging_in_the_browser(browser, report, run_dir):
    browser.open(report)
    table = _all_pairs(run_dir)
    rare = min((t for t in {t for ts in table.column("error_types").to_pylist() for t in ts}),
               key=lambda t: sum(t in ts for ts in table.column("error_types").to_pylist()))
    shown = browser.eval(f"""(() => {{ const s = document.getElementById('f-type');
        s.value = {json.dumps(rare)}; s.dispatchEvent(new Event('change'));
        return [...document.querySelectorAll('#cards .card')].map(c =>
            [...c.querySelectorAll('.head .chip')].map(x => x.textContent)); }})()""")
    assert shown and all(rare in chips for chips in shown)

    browser.eval("""(() => { const s = document.getElementById('f-type'); s.value = '';
        s.dispatchEvent(new Event('change')); })()""")
    first = browser.eval("[...document.querySelectorAll('#cards .card')].map(c => c.dataset.pairId)")
    browser.eval("document.querySelector('#pager-top button:last-child').click()")
    second = browser.eval("[...document.querySelectorAll('#cards .card')].map(c => c.dataset.pairId)")
    assert second and not set(first) & set(second)

    reason = browser.eval("""(() => { const s = document.getElementById('f-reason');
        s.value = s.options[1].value; s.dispatchEvent(new Event('change')); return s.value; })()""")
    reasons = browser.eval("[...document.querySelectorAll('#reject-rows tr td:nth-child(4)')].map(t => t.textContent)")
    assert reasons and set(reasons) == {reason}
    assert browser.errors() == []


@pytest.fixture(scope="session")
def hostile_run(run_dir, tmp_path_factory) -> Path:
    """The real run with markup in every text field a user could see."""
    out = tmp_path_factory.mktemp("hostile")
    for i, shard in enumerate(sorted(run_dir.glob("shard-*.parquet"))):
        t = pq.read_table(shard)
        for name in ("sample_id", "prompt", "chosen", "rejected", "reference", "task", "meta"):
            col = t.column(name)
            t = t.set_column(t.schema.get_field_index(name), name,
                             pc.binary_join_element_wise(col, pa.scalar(PAYLOAD), ""))
        pq.write_table(t, out / shard.name)
        if i == 0:
            break
    rejects = pq.read_table(run_dir / "rejects.parquet")
    rejects = rejects.set_column(rejects.schema.get_field_index("detail"), "detail",
                                 pc.binary_join_element_wise(rejects.column("detail"), pa.scalar(PAYLOAD), ""))
    pq.write_table(rejects, out / "rejects.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["shards"] = [p.name for p in sorted(out.glob("shard-*.parquet"))]
    manifest["pipeline_version"] = PAYLOAD
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_every_text_field_is_escaped_in_the_file(hostile_run, tmp_path):
    page = write_report(hostile_run, tmp_path / "r.html").path.read_text()
    assert "<script>document.title" not in page
    assert "<img src=x" not in page
    assert page.count("<script") == 2  # the data block and the page's own script
    assert page.count("</script>") == 2
    assert "&lt;script&gt;document.title" in page  # the summary (task names, version) escapes it


@needs_chromium
def test_markup_in_a_response_is_shown_as_text_not_run(browser, hostile_run, tmp_path):
    path = write_report(hostile_run, tmp_path / "r.html").path
    browser.open(path)
    assert browser.eval("document.title") != "pwned"
    assert browser.eval("document.body.dataset.pwned") is None
    assert browser.eval("document.querySelectorAll('img[src=x], img[src$=\"/x\"]').length") == 0
    texts = browser.eval("[...document.querySelectorAll('#cards .card .diff')].map(d => d.textContent)")
    assert texts and all(PAYLOAD in t for t in texts)
    assert PAYLOAD in browser.eval("document.querySelector('#reject-rows td.detail').textContent")
    assert browser.errors() == []


# ---------------------------------------------------------------- the figures behind the page


def test_statistics_cover_every_pair(run_dir, manifest):
    from pipeline.packing import edit_ratio
    from schemas.pair import Edit, PairRecord

    run = open_run(run_dir)
    stats, _ = scan_pairs(run.shards, ReportOptions(batch_size=7))  # batches cut across row groups
    table = _all_pairs(run_dir)
    rows = table.to_pylist()
    assert stats.pairs == manifest["counts"]["pairs"] == len(rows)
    tasks = {}
    for r in rows:
        tasks[r["task"]] = tasks.get(r["task"], 0) + 1
    assert dict(stats.tasks) == tasks
    by_type = {}
    for r in rows:
        for t in set(r["error_types"]):
            by_type[t] = by_type.get(t, 0) + 1
    assert dict(stats.pairs_by_error) == by_type
    assert sum(stats.edits_by_error.values()) == sum(len(r["edits"]) for r in rows)
    assert int(stats.edit_ratio_hist.sum()) == len(rows)
    with_fraction = [r for r in rows if r["corruption"]["mask_fraction"] is not None]
    assert stats.with_mask_fraction == len(with_fraction) > 0

    ratios = np.concatenate([edit_ratios(b) for s in run.shards
                             for b in pq.ParquetFile(s).iter_batches(batch_size=5, columns=["chosen", "rejected", "edits"])])
    expected = [edit_ratio(PairRecord(**{**{k: None for k in PairRecord.__dataclass_fields__},
                                         "chosen": r["chosen"], "rejected": r["rejected"],
                                         "edits": [Edit(**e) for e in r["edits"]]}))
                for r in rows]
    np.testing.assert_allclose(ratios, expected)
    batch = pq.read_table(run.shards[0], columns=["chosen", "rejected", "edits"]).combine_chunks().to_batches()[0]
    part = batch.slice(3, 11)  # a slice's list offsets do not start at 0
    assert part.column("edits").offsets[0].as_py() > 0
    np.testing.assert_allclose(edit_ratios(part), edit_ratios(batch)[3:14])


def test_sample_is_seeded_bounded_and_keeps_rare_classes(run_dir):
    run = open_run(run_dir)
    table = _all_pairs(run_dir)
    types = [set(ts) for ts in table.column("error_types").to_pylist()]
    small = ReportOptions(sample=5, per_class=1)
    _, a = scan_pairs(run.shards, small)
    _, b = scan_pairs(run.shards, small)
    _, c = scan_pairs(run.shards, ReportOptions(sample=5, per_class=1, seed=1))
    assert a.chosen() == b.chosen() and a.chosen() != c.chosen()
    classes = {t for ts in types for t in ts}
    assert len(a.chosen()) <= 5 + len(a.classes)
    picked = set(a.chosen())
    for t in classes:  # every error type has a card, however rare
        assert any(t in types[r] for r in picked), t


def test_cards_round_trip_the_texts_and_a_small_sample_gives_a_small_file(run_dir, tmp_path):
    small = write_report(run_dir, tmp_path / "small.html", ReportOptions(sample=4, per_class=1))
    full = write_report(run_dir, tmp_path / "full.html", ReportOptions(sample=1000))
    assert small.cards < full.cards == small.pairs
    assert small.bytes < full.bytes
    for r in _all_pairs(run_dir).to_pylist():
        segs, ok = diff_segments(r["rejected"], r["chosen"], r["edits"])
        assert ok, r["pair_id"]
        assert "".join(t for k, t, _ in segs if k in (0, 1)) == r["rejected"]
        assert "".join(t for k, t, _ in segs if k in (0, 2)) == r["chosen"]
    r = _all_pairs(run_dir).to_pylist()[0]
    broken = [{**e, "before": e["before"] + "x"} for e in r["edits"]]
    assert diff_segments(r["rejected"], r["chosen"], broken)[1] is False


def test_byte_budget_keeps_the_uniform_cards_in_order(run_dir):
    run = open_run(run_dir)
    _, sampler = scan_pairs(run.shards, ReportOptions(sample=4, per_class=3))
    cards = build_cards(run.shards, sampler.chosen(), 64)
    extras = sum(not c["uniform"] for c in cards)
    assert extras > 0 and any(c["images"] and c["images"][0][1] for c in cards)
    budget = sum(len(json.dumps(c, ensure_ascii=False, separators=(",", ":")).encode()) for c in cards if c["uniform"])
    kept, dropped = within_budget(cards, budget)
    assert dropped == extras and all(c["uniform"] for c in kept)
    assert [c["id"] for c in kept] == [c["id"] for c in cards if c["uniform"]]


def test_thumbnail_is_small_and_outlines_the_mask(run_dir):
    shard = next(s for s in sorted(run_dir.glob("shard-*.parquet"))
                 if pc.sum(pc.list_value_length(pq.read_table(s, columns=["corrupted_images"])
                                                .column("corrupted_images"))).as_py())
    row = next(r for r in pq.read_table(shard, columns=["images", "corrupted_images", "corruption"]).to_pylist()
               if r["corrupted_images"])
    png, mask = row["corrupted_images"][0]["bytes"], row["corruption"]["masks"][0]

    def decode(uri):
        assert uri.startswith("data:image/jpeg;base64,")
        return cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)

    plain, outlined = decode(thumbnail(png, 128)), decode(thumbnail(png, 128, mask))
    assert max(plain.shape[:2]) == 128
    def yellow(img):  # red and green well above blue: the outline colour, never an X-ray grey
        img = img.astype(int)
        return int(((img[..., 2] + img[..., 1]) / 2 - img[..., 0] > 60).sum())

    assert yellow(plain) == 0
    assert yellow(outlined) > 2 * 128 * row["corruption"]["mask_fraction"] ** 0.5  # at least a square's sides
    assert thumbnail(b"not a png", 128) is None


def test_cli_report_and_its_errors(run_dir, tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    dest = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(dest), "--sample", "10"])
    assert result.exit_code == 0, result.output
    assert dest.is_file() and str(dest) in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(dest)])
    assert result.exit_code == 2 and "no manifest.json" in result.output
    with pytest.raises(ReportError, match="no manifest.json"):
        write_report(tmp_path)


# ---------------------------------------------------------------- the Prefect artifact




@pytest.mark.slow
def test_report_is_attached_to_the_flow_run(prefect_harness, run_dir, manifest, tmp_path):
    from prefect import flow
    from prefect.artifacts import Artifact
    from prefect.runtime import flow_run

    from flows.report_artifact import LINK_KEY, SUMMARY_KEY, publish_report_artifact

    html = tmp_path / "report.html"  # not written yet: publishing writes it

    @flow(name="report-artifact-test")
    def attach(out: str, page: str) -> tuple[dict, str]:
        return publish_report_artifact(out, page), str(flow_run.id)

    ids, run_id = attach(str(run_dir), str(html))
    assert html.is_file()
    link, summary = Artifact.get(LINK_KEY, _sync=True), Artifact.get(SUMMARY_KEY, _sync=True)
    assert {str(link.id), str(summary.id)} == set(ids.values())
    assert str(link.flow_run_id) == str(summary.flow_run_id) == run_id
    assert link.type == "markdown" and html.resolve().as_uri() in link.data
    assert f"| pairs | {manifest['counts']['pairs']:,} |" in summary.data
    assert f"| rejects | {manifest['counts']['rejects']:,} |" in summary.data
