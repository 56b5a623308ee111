"""The package layout as rules, checked on the source with ``ast`` (nothing is imported).

One room per stage, lower rooms never import higher ones::

    schemas      records and Arrow schemas                      imports nothing of ours
    clinical     reading a report                               schemas
    editors      the edits and their verification               schemas, clinical
    corruptors   masks and image corruptors                     schemas
    models       model-family adapters, prompts, tiny models    schemas
    report       build-pairs report / gallery / eval            anything above, never pipeline
    pipeline     the wiring (importers, samplers, runner, CLI)  anything above
    trainer      train-pairs                                    anything above, never flows
    flows        Prefect                                        anything

Checked: no import circle between modules nor between packages (every import counts: at module level,
inside functions and under ``TYPE_CHECKING``), each package's allowed imports, and no non-test file over
``MAX_LINES`` lines except those in ``LONG_FILES`` (each with its reason). Prints the figures of issue 15:
``python scripts/check_layout.py`` (exit status 1 when a rule is broken).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["schemas", "clinical", "editors", "corruptors", "models", "report", "pipeline", "trainer", "flows",
            "medpref_data"]
OTHER_CODE = ["benchmarks", "scripts"]  # non-test code outside the packages (counted in the share)
# the packages of ours each package may import (itself always); None: any
ALLOWED: dict[str, set[str] | None] = {
    "schemas": set(),
    "medpref_data": set(),
    "clinical": {"schemas"},
    "editors": {"schemas", "clinical"},
    "corruptors": {"schemas"},
    "models": {"schemas"},
    "report": {"schemas", "clinical", "editors", "corruptors", "models"},
    "pipeline": {"schemas", "clinical", "editors", "corruptors", "models", "report"},
    "trainer": {"schemas", "clinical", "editors", "corruptors", "models", "pipeline"},
    "flows": None,
}
MAX_LINES = 400
LONG_FILES: dict[str, str] = {}


def source_files(root: Path = ROOT, dirs: list[str] | None = None) -> list[Path]:
    out = []
    for d in dirs or PACKAGES:
        out += sorted(p for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts)
    return out


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    files = {module_name(p, root): p for p in source_files(root)}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(r for a in node.names if (r := resolve(a.name)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    r = sub if sub in files else resolve(base)
                    if r:
                        found.add(r)
        found.discard(mod)
        graph[mod] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    pkgs: dict[str, set[str]] = defaultdict(set)
    for mod, deps in graph.items():
        top = mod.split(".")[0]
        pkgs[top].update(d.split(".")[0] for d in deps if d.split(".")[0] != top)
    return dict(pkgs)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in sorted(graph.items()):
        top = mod.split(".")[0]
        allowed = ALLOWED.get(top)
        if allowed is None:
            continue
        out += [f"{mod} imports {d} ({top}/ may import only {', '.join(sorted(allowed)) or 'nothing of ours'})"
                for d in sorted(deps) if d.split(".")[0] not in allowed | {top}]
    return out


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def long_files(root: Path = ROOT) -> list[str]:
    out = []
    for p in source_files(root, PACKAGES + OTHER_CODE):
        rel = p.relative_to(root).as_posix()
        if line_count(p) > MAX_LINES and rel not in LONG_FILES:
            out.append(f"{rel}: {line_count(p)} lines (limit {MAX_LINES})")
    return out


def shares(root: Path = ROOT) -> dict[str, int]:
    """Non-test lines per top-level folder (packages, benchmarks, scripts)."""
    counts: dict[str, int] = {}
    for d in PACKAGES + OTHER_CODE:
        counts[d] = sum(line_count(p) for p in source_files(root, [d]))
    return counts


def main() -> int:
    graph = import_graph()
    module_cycles = cycles(graph)
    package_cycles = cycles(package_graph(graph))
    layers = layer_violations(graph)
    long = long_files()
    counts = shares()
    total = sum(counts.values())
    packages_total = sum(counts[d] for d in PACKAGES)
    print(f"non-test lines: {total} ({packages_total} in packages, the rest in {', '.join(OTHER_CODE)})")
    for d, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {d + '/':<14}{n:>6}  {n / total:6.1%}")
    print(f"pipeline/ share: {counts['pipeline'] / total:.1%} of non-test code, "
          f"{counts['pipeline'] / packages_total:.1%} of package code")
    print(f"import circles: {len(module_cycles)} between modules, {len(package_cycles)} between packages")
    for c in module_cycles + package_cycles:
        print("  circle:", " <-> ".join(c))
    imports_up = [v for v in layers if v.split(".")[0] in ("clinical", "editors", "corruptors", "schemas")
                  and " imports pipeline" in v]
    print(f"imports of pipeline from clinical/, editors/, corruptors/, schemas/: {len(imports_up)}")
    print(f"layer violations: {len(layers)}")
    for v in layers:
        print("  ", v)
    print(f"files over {MAX_LINES} lines: {len(long)} (+ {len(LONG_FILES)} listed exceptions)")
    for v in long:
        print("  ", v)
    for rel, why in LONG_FILES.items():
        if (ROOT / rel).exists():
            print(f"   exception {rel}: {line_count(ROOT / rel)} lines, {why}")
    return 1 if module_cycles or package_cycles or layers or long else 0


if __name__ == "__main__":
    sys.exit(main())
