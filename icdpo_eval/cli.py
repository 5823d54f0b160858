"""``icdpo-eval``: the command line around lm-eval.

    icdpo-eval run --model icdpo --tasks hh_harmless_mini --limit 2   # lm_eval run's flags, lm-eval's public API
    icdpo-eval bench --json                                          # engine benchmark (benchmarks/engine.py)
    icdpo-eval models [path base|teacher|sbert]                      # embedded default models (embedded:base, ...)
    icdpo-eval models twins DIR                                      # their tiny random twins (ICDPO_EMBEDDED_DIR=DIR)
    icdpo-eval leaderboard SPEC.yaml --out DIR                       # many models x tasks -> md/CSV/PNG
    icdpo-eval compare NEW BASELINE [--tolerance X] [--ci]           # regression gate (exit 1 on a drop)
    icdpo-eval compare-at-budget DIR --at ICDPO                      # each method's reward at ICDPO's compute
    icdpo-eval score OUTPUTS... --task hh_harmless --out DIR         # saved responses scored, no policy loaded
    icdpo-eval borrow --teacher X --task hh_harmless --out demos.jsonl
    icdpo-eval train sft|dpo --base X --task hh_harmless --out DIR
    icdpo-eval build-rank-set --task hh_harmless --out rank.jsonl    # data of the MRR task
    icdpo-eval demo-nll --sources raw,demos.jsonl                    # base-model NLL of demos per source
    icdpo-eval show-prompt --task hh_harmless_mini --doc 0 --scorer s_hat  # the exact contexts a doc is scored under

Each subcommand has --help. A user error (:class:`icdpo_eval.errors.UserError`: a bad option, a missing or
malformed file, a bad spec, a failing judge) prints one line, ``icdpo-eval <command>: error: <what>, <where>,
<what to do>``, and exits 2; ``--debug`` (anywhere on the command line) shows the traceback instead. Anything
else is a bug and prints its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from icdpo_eval.errors import OptionError, UserError

# subcommand -> module with add_parser(subparsers) and main(args) -> int (imported only when used)
SUBCOMMANDS = {
    "leaderboard": "icdpo_eval.leaderboard.board",
    "compare": "icdpo_eval.gates.compare",
    "compare-at-budget": "icdpo_eval.leaderboard.budget",
    "score": "icdpo_eval.outputs.score",
    "borrow": "icdpo_eval.prepare.borrow",
    "train": "icdpo_eval.baselines.train",
    "build-rank-set": "icdpo_eval.prepare.rank_set",
    "demo-nll": "icdpo_eval.diagnostics.demo_nll",
    "show-prompt": "icdpo_eval.diagnostics.show_prompt",
    "report": "icdpo_eval.report.pages",
}


def _run(argv: list[str]) -> int:
    from icdpo_eval import harness

    return harness.run_command(argv)


def _models(args: argparse.Namespace) -> int:
    from icdpo_eval.config import names, settings

    if args.action == "twins":
        from pathlib import Path

        from icdpo_eval.data import twins

        root = twins.build_all(Path(args.which))
        print(f"tiny twins of {', '.join(twins.KINDS)} in {root}; `export ICDPO_EMBEDDED_DIR={root}` makes "
              "embedded:base / teacher / sbert resolve to them (random weights: for tests and plumbing, not results)")
        return 0
    if args.action == "path":
        name = names.canonical(f"embedded:{args.which}")
        if name not in names.WHAT:
            raise OptionError(f"unknown embedded model {args.which!r}; one of: base, teacher, sbert")
        print(names.resolve(name))
        return 0
    print(f"cache dir: {settings.cache_dir()}  (set ICDPO_CACHE_DIR to move it)")
    if settings.embedded_dir() is not None:
        print(f"ICDPO_EMBEDDED_DIR={settings.embedded_dir()}: the names below resolve to its base/, teacher/, sbert/")
    for name, what in names.WHAT.items():
        synonyms = ", ".join(k for k, v in names.SYNONYMS.items() if v == name and k != name)
        print(f"  {name:18s} {what}  (synonym {synonyms})")
    print("`icdpo-eval models path base` converts (once) and prints the local folder.")
    return 0


def _bench(argv: list[str]) -> int:
    """``icdpo-eval bench``: a door to ``benchmarks/engine.py`` of the source checkout this package runs from (the
    benchmark is a script of the repository, not part of the installed package)."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"
    if not script.is_file():
        raise UserError(f"icdpo-eval bench runs benchmarks/engine.py of a source checkout ({script} is missing): "
                        "install with `pip install -e .` from a clone of the repository")
    saved = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    finally:
        sys.argv = saved
    return 0


def console() -> int:
    """The ``icdpo-eval`` program: its runs reach lm-eval through :mod:`icdpo_eval.harness` only, so the stock-CLI
    hook that the ``.pth`` file installed at interpreter start is taken out before lm-eval is imported."""
    from icdpo_eval import _lm_eval_hook

    _lm_eval_hook.uninstall()
    return main()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = argv[0] if argv and not argv[0].startswith("-") else "icdpo-eval"
    if debug:
        return _main(argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"icdpo-eval {command}: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"icdpo-eval {command}: error: {one_line(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (its type named when the message alone would be unclear)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "run":
        return _run(argv[1:])
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    parser = argparse.ArgumentParser(prog="icdpo-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="lm-eval's run (the flags of `lm_eval run`, see run --help) with icdpo-eval's models "
                   "and tasks registered through lm-eval's public API")
    sub.add_parser("bench", help="engine benchmark: naive pipeline vs ours vs one ICL sample (see bench --help)")
    m = sub.add_parser("models", help="list the embedded default models, print one's local path, or build their tiny "
                       "twins")
    m.add_argument("action", nargs="?", choices=["list", "path", "twins"], default="list")
    m.add_argument("which", nargs="?", default="base", help="path: base | teacher | sbert; twins: the folder to write")
    wanted = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    modules = {}
    for name, mod in SUBCOMMANDS.items():
        if wanted in (None, name):
            try:
                modules[name] = importlib.import_module(mod)
            except ImportError as exc:  # keep the rest of the CLI usable
                sub.add_parser(name, help=f"(unavailable: {exc})")
                continue
            modules[name].add_parser(sub)
        else:
            sub.add_parser(name, help=f"see `icdpo-eval {name} --help`", add_help=False)
    args = parser.parse_args(argv)
    if args.command == "models":
        return _models(args)
    if args.command in modules:
        return int(modules[args.command].main(args) or 0)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(console())
