"""Attach a run's HTML report to its Prefect flow run: a link artifact and a markdown summary.

The report itself is a local file (``report.html``); Prefect stores only its link and a few
figures, so the flow-run page says what the run produced and where to look, without uploading
images. Called inside a flow run the artifacts attach to it; outside one they are stored unattached.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact

from report.html import write_report

LINK_KEY = "pair-report"
SUMMARY_KEY = "pair-report-summary"


def _md(text) -> str:
    """Text safe inside a markdown table cell: no markup, no pipes, one line."""
    out = " ".join(str(text).split())
    for ch in "\\`*_{}[]<>()#+!|":
        out = out.replace(ch, "\\" + ch)
    return out


def report_markdown(out_dir: Path, html_path: Path) -> str:
    """The counts of ``manifest.json`` and the rejects by reason, as a short markdown page."""
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest.get("counts") or {}
    lines = ["## Pair report", "", f"Report: `{html_path.resolve()}` ({html_path.stat().st_size / 1e6:.1f} MB)",
             "", "| count | value |", "|---|---:|"]
    lines += [f"| {_md(k)} | {counts[k]:,} |" for k in ("samples", "responses", "pairs", "rejects")
              if isinstance(counts.get(k), int)]
    rejects = out_dir / str(manifest.get("rejects") or "rejects.parquet")
    if rejects.is_file():
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        reasons = pc.value_counts(pq.read_table(rejects, columns=["reason"]).column("reason")).to_pylist()
        if reasons:
            lines += ["", "| reject reason | rejects |", "|---|---:|"]
            lines += [f"| {_md(r['values'])} | {r['counts']:,} |"
                      for r in sorted(reasons, key=lambda r: -r["counts"])]
    lines += ["", f"Pipeline {_md(manifest.get('pipeline_version', '?'))}, "
                  f"config {_md(manifest.get('config_hash', '?'))}."]
    return "\n".join(lines) + "\n"


def publish_report_artifact(out_dir: str | Path, html_path: str | Path) -> dict[str, str]:
    """Link ``html_path`` (written first if missing) and summarise ``out_dir`` as artifacts of the
    current flow run; returns the artifact ids by key."""
    out_dir, html_path = Path(out_dir), Path(html_path)
    if not html_path.is_file():
        write_report(out_dir, html_path)
    counts = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8")).get("counts") or {}
    link_id = create_link_artifact(
        link=html_path.resolve().as_uri(),
        link_text=f"Pair report: {counts.get('pairs', '?')} pairs, {counts.get('rejects', '?')} rejects",
        key=LINK_KEY,
        description=f"Self-contained HTML report of {out_dir.resolve()} (open it in a browser).",
        _sync=True,  # a plain call, even when the caller runs an event loop
    )
    summary_id = create_markdown_artifact(
        markdown=report_markdown(out_dir, html_path), key=SUMMARY_KEY,
        description="Counts of the run and where its report is.", _sync=True,
    )
    return {LINK_KEY: str(link_id), SUMMARY_KEY: str(summary_id)}
