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


# the foundation: small modules every layer may use (docs/architecture.md, "The foundation")
FOUNDATION = {"errors", "settings", "runtime", "names", "options", "api_client", "stats"}
# what each foundation module may import of ours (nothing else)
FOUNDATION_DEPS = {
    "errors": set(),
    "settings": {"errors"},
    "runtime": {"settings"},
    "names": {"errors", "data"},  # resolve() converts embedded models (data.embedded), lazily
    "options": {"errors", "names", "settings"},
    "api_client": {"settings", "errors"},
    "stats": set(),
}
# layer -> the layers (and foundation modules) it may import (docs/architecture.md's table)
LAYERS = {
    "engine": {"engine", "runtime", "errors"},
    "data": {"data"} | FOUNDATION,
    "judges": {"judges", "data"} | FOUNDATION,
    "method": {"method", "engine", "data"} | FOUNDATION,
    "models": {"models", "method", "engine", "data", "judges"} | FOUNDATION,
    "baselines": {"baselines", "models", "method", "engine", "data", "judges"} | FOUNDATION,
    "tasks": {"tasks", "judges", "data"} | FOUNDATION,
    "preflight": {"preflight", "_lm_eval_hook", "models", "baselines", "method", "engine", "data", "judges",
                  "tasks"} | FOUNDATION,
    "_lm_eval_hook": {"_lm_eval_hook", "preflight"} | FOUNDATION,
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "icdpo_eval"


def test_layers():
    g = graph()
    bad = []
    for m, deps in g.items():
        lay = layer_of(m)
        allowed = FOUNDATION_DEPS.get(lay) if lay in FOUNDATION else LAYERS.get(lay)
        if allowed is None:  # report/, cli, the package's __init__: anything
            continue
        for d in deps:
            if layer_of(d) not in allowed | {lay}:
                bad.append(f"{m} imports {d}")
    assert not bad, "\n".join(bad)


def test_nothing_but_report_and_cli_imports_report():
    g = graph()
    bad = [f"{m} imports {d}" for m, deps in g.items() for d in deps
           if layer_of(d) == "report" and layer_of(m) not in ("report", "cli")]
    assert not bad, "\n".join(bad)


def test_the_rules_are_the_documented_ones():
    """Every layer named in docs/architecture.md's table has a rule here, and the other way round."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for lay in [*LAYERS, *FOUNDATION]:
        assert f"`{lay}" in doc or f"/{lay}" in doc or f"{lay}.py" in doc, f"docs/architecture.md does not name {lay}"


def test_the_checker_sees_imports():
    g = graph()
    assert "icdpo_eval.engine.sampling" in g["icdpo_eval.engine.engine"]
    assert "icdpo_eval.data.hh" in g["icdpo_eval.judges.reward_model"]
    assert "icdpo_eval.method.scorers" in g["icdpo_eval.baselines.dpo"]
    assert "icdpo_eval.options" in g["icdpo_eval.models.icdpo"]
    assert layer_of("icdpo_eval.options") == "options" and layer_of("icdpo_eval.engine.engine") == "engine"
