"""The layering of docs/architecture.md, checked on the source (every import, lazy ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# where each installed package lives in the repository (pyproject's package-dir)
SOURCES = {"icdpo_eval": ROOT / "icdpo_eval", "icdpo_eval.baselines": ROOT / "baselines",
           "icdpo_eval.tasks": ROOT / "tasks"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            if pkg == "icdpo_eval" and rel.parts[0] in ("baselines", "tasks"):
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The icdpo_eval modules ``path`` imports (resolving ``from pkg import module``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("icdpo_eval")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            mod = node.module
            if node.level:
                base = name.split(".")[: -node.level] if not path.name == "__init__.py" else name.split(".")
                mod = ".".join([*base, mod]) if mod else ".".join(base)
            if not mod.startswith("icdpo_eval"):
                continue
            for a in node.names:
                found.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
    return {m for m in found if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, name, set(mods)) - {name} for name, path in mods.items()}


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers():
    g = graph()
    allowed = {
        "engine": {"engine"},
        "data": {"data"},
        "judges": {"judges", "data", "api_client"},
        "method": {"method", "engine", "data", "api_client"},
        "tasks": {"tasks", "judges", "data", "api_client"},
    }
    bad = []
    for m, deps in g.items():
        lay = m.split(".")[1] if m.count(".") >= 1 else "icdpo_eval"
        if lay in allowed:
            for d in deps:
                dl = d.split(".")[1] if d.count(".") >= 1 else "icdpo_eval"
                if dl not in allowed[lay]:
                    bad.append(f"{m} imports {d}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_imports():
    g = graph()
    assert "icdpo_eval.engine.sampling" in g["icdpo_eval.engine.engine"]
    assert "icdpo_eval.data.hh" in g["icdpo_eval.judges.reward_model"]
    assert "icdpo_eval.method.scorers" in g["icdpo_eval.baselines.dpo"]
