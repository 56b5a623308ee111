"""``build-pairs``: the command line of CONTRACT.md section 2.

Every command does its work through a library function; this module only maps flags onto
configuration overrides and turns an expected failure into one line on stderr and exit status 2.
Heavy modules are imported inside the command that needs them, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="build-pairs",
    help="Build verified minimal-edit preference pairs and lesion-corrupted images for medical VLMs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXIT_ERROR = 2


def _fail(message: str) -> None:
    typer.echo(f"build-pairs: error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(EXIT_ERROR)


def _offline_env() -> None:
    """Nothing is ever downloaded from a hub (CONTRACT: the default run works offline)."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("DO_NOT_TRACK", "1")):
        os.environ.setdefault(key, value)


# The clinical NLP stack warns about its own internals on every start (spaCy's regex FutureWarning,
# scispacy/medspacy version notes): nothing a user can act on, so the command lines hide them, once,
# here. The library itself filters nothing, so tests and notebooks still see every warning.
THIRD_PARTY_WARNINGS = ("spacy", "scispacy", "thinc", "medspacy", "negspacy", "PyRuSH", "pyrush")


def filter_third_party_warnings() -> None:
    import warnings

    for module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", module=rf"{module}(\..*)?$")


def run_overrides(model: str | None = None, sampler: str | None = None, num_samples: int | None = None,
                  seed: int | None = None, tokenizer: str | None = None) -> dict:
    """Flags as dotted config overrides (None: flag not given). ``--model`` alone picks the
    transformers sampler, which runs on the CPU."""
    overrides = {"sampler.model": model, "sampler.name": sampler, "sampler.num_samples": num_samples,
                 "seed": seed, "tokenizer": tokenizer}
    if model is not None and sampler is None:
        overrides["sampler.name"] = "transformers"
    return overrides


@app.command("import")
def import_cmd(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="Dataset layout, e.g. iu-generations, nih-reports.")],
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="The dataset file or its folder.")],
    out: Annotated[Path, typer.Option("--out", help="The sample manifest to write (JSON Lines).")],
    images_dir: Annotated[Path | None, typer.Option("--images-dir", help="Where the images are.")] = None,
) -> None:
    """Convert a dataset into a sample manifest."""
    from pipeline.importers import FORMATS, import_samples, write_manifest

    if fmt not in FORMATS:
        _fail(f"unknown import format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    try:
        n = write_manifest(import_samples(fmt, source, images_dir=images_dir, manifest_dir=out.parent), out)
    except (OSError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"wrote {n} samples to {out}")


@app.command("run")
def run_cmd(
    samples: Annotated[Path, typer.Option("--samples", help="The sample manifest (JSON Lines).")],
    out: Annotated[Path, typer.Option("--out", help="The output folder.")],
    config: Annotated[Path | None, typer.Option("--config", help="A YAML config file.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted run in --out.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="Policy model path (sampling).")] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", help="replay|transformers|vllm|vllm-server")] = None,
    num_samples: Annotated[int | None, typer.Option("--num-samples", help="Responses sampled per sample.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Run seed.")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer path for the token ids.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar.")] = None,
    partitions: Annotated[int, typer.Option("--partitions", min=1, help="Split the manifest by line index "
                                            "into N partitions, built one after another (the Prefect flow "
                                            "runs them in parallel); --resume needs the same N.")] = 1,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Local worker processes (default: "
                                                "the machine's cores); the output is the same for any N.")] = None,
    wait_for_lock: Annotated[bool, typer.Option("--wait-for-lock", help="When another process is writing "
                                                "--out, wait for it to end instead of failing at once.")] = False,
) -> None:
    """Build pair shards from a sample manifest (flags override the config file)."""
    _offline_env()
    from pipeline.config import ConfigError, load_config

    try:  # the config first: a typo is reported before the heavy modules load
        cfg = load_config(config, run_overrides(model, sampler, num_samples, seed, tokenizer))
    except ConfigError as e:
        _fail(str(e))
    from pipeline.runner import RunError, run

    try:
        summary = run(samples, out, cfg, resume=resume, progress=progress, partitions=partitions, workers=workers,
                      wait_for_lock=wait_for_lock)
    except RunError as e:
        _fail(str(e))
    except OSError as e:  # anything the runner did not wrap: still one line, never a traceback
        _fail(f"cannot run: {e.strerror or e}" + (f" ({e.filename})" if getattr(e, "filename", None) else ""))
    except Exception as e:  # noqa: BLE001 - a bug: one line that says so, the folder stays resumable
        if os.environ.get("MEDPREF_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {e} (MEDPREF_DEBUG=1 shows the traceback; "
              "fix and rerun with --resume)")
    typer.echo(summary.format())


@app.command("eval")
def eval_cmd(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="A finished run's output folder.")],
    extractor: Annotated[str | None, typer.Option("--extractor", help="Re-check with this extractor "
                                                  "(default: the run's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Re-check a finished run's pairs and print quality figures."""
    _offline_env()
    if not (out_dir / "manifest.json").is_file():
        _fail(f"{str(out_dir)!r} is not a finished run (no manifest.json)")
    from report import evaluate as evaluate_mod

    try:
        report = evaluate_mod.evaluate(out_dir, extractor=extractor)
    except (OSError, ValueError) as e:
        _fail(str(e))
    formatter = getattr(evaluate_mod, "format_report", None)
    if as_json or formatter is None:
        typer.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(formatter(report))


@app.command("gallery")
def gallery_cmd(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="A run's output folder (the shards).")],
    dest: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write the gallery.")],
    limit: Annotated[int, typer.Option("--limit", help="Pairs to show.")] = 24,
) -> None:
    """Write an HTML gallery of clean and corrupted images with their edits."""
    from report.gallery import write_gallery

    if not out_dir.is_dir():
        _fail(f"{str(out_dir)!r} is not a folder")
    try:
        result = write_gallery(out_dir, dest, limit=limit)
    except (OSError, ValueError) as e:
        _fail(str(e))
    count = f"{len(result)} image(s) " if isinstance(result, list | tuple) else ""
    typer.echo(f"wrote {count}gallery to {dest}")


@app.command("tiny-model")
def tiny_model_cmd(
    dest: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write the model.")],
) -> None:
    """Write a tiny random-weight vision-language model with tokenizer and processor (no download)."""
    _offline_env()
    from models.tiny_model import build_tiny_model

    try:
        build_tiny_model(dest)
    except (OSError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"wrote tiny model to {dest}")


@app.command("report")
def report_cmd(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="A finished run's output folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="The HTML file (default OUT_DIR/report.html).")] = None,
    sample: Annotated[int, typer.Option("--sample", help="Pair cards sampled uniformly.")] = 300,
    per_class: Annotated[int, typer.Option("--per-class", help="Extra cards per error type, task, source.")] = 10,
    thumb: Annotated[int, typer.Option("--thumb", help="Thumbnail size in pixels.")] = 128,
    seed: Annotated[int, typer.Option("--seed", help="Picks the sampled cards.")] = 0,
) -> None:
    """Write one self-contained HTML page: the run's figures and a sample of pair cards."""
    from report.data import ReportError, ReportOptions
    from report.html import write_report

    try:
        result = write_report(out_dir, out, ReportOptions(sample=sample, per_class=per_class, thumb=thumb, seed=seed))
    except (ReportError, OSError) as e:
        _fail(str(e))
    typer.echo(f"wrote {result.path} ({result.bytes / 1e6:.1f} MB, {result.cards} of {result.pairs} pairs "
               f"shown, {result.seconds:.1f} s)")


def main() -> None:
    """The ``build-pairs`` console script."""
    filter_third_party_warnings()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("build-pairs: interrupted (rerun with --resume to finish)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
