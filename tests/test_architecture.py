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


# the foundation: small modules every layer may use (docs/architecture.md, "The foundation"): the package root's
# cross-cutting helpers and the configuration room's declarations (config/settings, options, names)
FOUNDATION = {"errors", "settings", "runtime", "names", "options", "declared", "api_client", "stats"}
# what each foundation module may import of ours (nothing else)
FOUNDATION_DEPS = {
    "errors": set(),
    "settings": {"errors"},
    "runtime": {"settings"},
    "names": {"errors", "data"},  # resolve() converts embedded models (data.embedded), lazily
    "options": {"errors", "names", "settings"},
    "declared": set(),
    "api_client": {"settings", "errors", "runtime"},
    "stats": set(),
}
LOWER = {"models", "baselines", "method", "engine", "data", "judges", "tasks"}
# room -> the rooms (and foundation modules) it may import (docs/architecture.md's tables)
LAYERS = {
    "engine": {"engine", "runtime", "errors"},
    "data": {"data"} | FOUNDATION,
    "judges": {"judges", "data"} | FOUNDATION,
    "method": {"method", "engine", "data"} | FOUNDATION,
    "models": {"models", "method", "engine", "data", "judges"} | FOUNDATION,
    "baselines": {"baselines", "models", "method", "engine", "data", "judges"} | FOUNDATION,
    "tasks": {"tasks", "judges", "data"} | FOUNDATION,
    "preflight": {"preflight", "_lm_eval_hook"} | LOWER | FOUNDATION,
    "_lm_eval_hook": {"_lm_eval_hook", "preflight"} | FOUNDATION,
    "harness": {"harness", "preflight"} | FOUNDATION,
    "gates": {"gates", "errors", "stats"},
    "report": {"report", "leaderboard", "models.details", "errors"},
    "prepare": {"prepare", "preflight", "icdpo_eval"} | LOWER | FOUNDATION,  # icdpo_eval: __version__
    "diagnostics": {"diagnostics", "preflight"} | LOWER | FOUNDATION,
    "leaderboard": {"leaderboard", "gates", "report", "outputs", "preflight", "harness", "icdpo_eval"} | LOWER
    | FOUNDATION,
    "outputs": {"outputs", "preflight", "harness", "icdpo_eval"} | LOWER | FOUNDATION,
}
# the package root: its doors and a few cross-cutting helpers, nothing else
ROOT_MODULES = {"icdpo_eval", "icdpo_eval.cli", "icdpo_eval._lm_eval_hook", "icdpo_eval.harness", "icdpo_eval.errors",
                "icdpo_eval.runtime",
                "icdpo_eval.stats", "icdpo_eval.api_client"}
# rooms only the CLI (and the report's page command, for the leaderboard) may import
TOOLS = {"leaderboard": {"cli", "leaderboard", "report"}, "gates": {"cli", "gates", "leaderboard"},
         "prepare": {"cli", "prepare"}, "diagnostics": {"cli", "diagnostics"},
         "report": {"cli", "report", "leaderboard"}, "outputs": {"cli", "outputs", "leaderboard"}}


def layer_of(module: str) -> str:
    """The rule a module falls under: its room (``config/`` modules by their own name: settings, options, names are
    foundation, preflight is a layer of its own), ``models.details`` by itself, a root module by its name."""
    parts = module.split(".")
    if len(parts) == 1:
        return "icdpo_eval"
    if parts[1] == "config" and len(parts) > 2:
        return parts[2]
    if module == "icdpo_eval.models.details":
        return "models.details"
    return parts[1]


def test_layers():
    g = graph()
    bad = []
    for m, deps in g.items():
        lay = layer_of(m)
        allowed = FOUNDATION_DEPS.get(lay) if lay in FOUNDATION else LAYERS.get(lay)
        if lay == "models.details":
            allowed = LAYERS["models"]
        if allowed is None:  # cli, the package's __init__, config/__init__: anything
            assert lay in ("cli", "icdpo_eval", "config"), f"{m} falls under no rule"
            continue
        for d in deps:
            dl = layer_of(d)
            if dl not in allowed | {lay} and not (dl == "models.details" and "models" in allowed):
                bad.append(f"{m} imports {d}")
    assert not bad, "\n".join(bad)


def test_tool_rooms_are_imported_only_by_the_cli():
    g = graph()
    bad = [f"{m} imports {d}" for m, deps in g.items() for d in deps
           if layer_of(d) in TOOLS and layer_of(m) not in TOOLS[layer_of(d)]]
    assert not bad, "\n".join(bad)


def test_the_root_holds_only_the_doors_and_the_helpers():
    root = {m for m in modules() if m.count(".") <= 1 and m not in SOURCES.keys() - {"icdpo_eval"}
            and not (ROOT / "icdpo_eval" / m.split(".")[-1]).is_dir()}
    assert root == ROOT_MODULES, sorted(root ^ ROOT_MODULES)
    assert not (ROOT / "icdpo_eval" / "report" / "bench.py").exists() and (ROOT / "benchmarks" / "engine.py").is_file()


def test_the_report_and_the_gates_never_import_torch():
    """Run time, not the source: importing every module of report/ and gates/ (and what they import) loads no torch."""
    import subprocess
    import sys

    mods = sorted(m for m in modules() if layer_of(m) in ("report", "gates"))
    heavy = "('torch', 'transformers')"
    code = f"import sys; import {', '.join(mods)}; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


def test_the_rules_are_the_documented_ones():
    """Every room named in docs/architecture.md's tables has a rule here, and the other way round."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for lay in [*LAYERS, *FOUNDATION]:
        assert f"`{lay}" in doc or f"/{lay}" in doc or f"{lay}.py" in doc, f"docs/architecture.md does not name {lay}"
    for room in ("leaderboard/", "gates/", "report/", "prepare/", "diagnostics/", "outputs/", "config/"):
        assert f"`icdpo_eval/{room}`" in doc, room


def test_the_checker_sees_imports():
    g = graph()
    assert "icdpo_eval.engine.sampling" in g["icdpo_eval.engine.engine"]
    assert "icdpo_eval.data.hh" in g["icdpo_eval.judges.reward_model"]
    assert "icdpo_eval.method.scorers" in g["icdpo_eval.baselines.dpo"]
    assert "icdpo_eval.config.options" in g["icdpo_eval.models.icdpo"]
    assert layer_of("icdpo_eval.config.options") == "options" and layer_of("icdpo_eval.engine.engine") == "engine"


def test_only_the_hook_reaches_lm_eval_internals_or_installs_itself():
    """lm-eval through its public doors: no module but the stock-CLI hook imports a private lm-eval module (a path
    part that starts with ``_``) or calls the hook's ``install`` (icdpo_eval/harness.py is the door every run of
    ours takes)."""
    bad = []
    for name, path in modules().items():
        if name == "icdpo_eval._lm_eval_hook":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{name} imports {m}" for m in mods
                    if m.startswith("lm_eval") and any(p.startswith("_") for p in m.split(".")[1:])]
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "install":
                bad.append(f"{name} calls install()")
    assert not bad, "\n".join(bad)
