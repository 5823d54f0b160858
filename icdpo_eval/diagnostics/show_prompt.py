"""``icdpo-eval show-prompt``: the exact contexts ICDPO samples and scores one document under.

    icdpo-eval show-prompt --task hh_harmless_mini --doc 0 --scorer s_hat
    icdpo-eval show-prompt --task hh_harmless_mini --doc 3 --model_args retriever=bm25_sbert --repr
    icdpo-eval show-prompt --task hh_harmless_mini --doc 72 --scorer s_hat --json --model_args instructions=FILE

Prints the retrieved demos, the positive in-context prompt (d+, x) the candidates are sampled under,
the reference context of the scorer (zero-shot x for S, the negative prompt (d-, x) for Ŝ, none for
ICL) and how a candidate y is appended (``" " + y`` plus EOS when ``score_eos`` is on). It takes the
same ``--model_args`` as ``lm_eval --model icdpo`` (the same declaration, :data:`icdpo_eval.config.options.ICDPO`) and
builds the demos exactly as a run does (same retriever, seed, pool, dialogue preparation and instruction
lines), loading only the base model's tokenizer, never its weights. ``--repr`` prints each context as a Python
string literal, so every newline and space is visible; ``--json`` prints one JSON object (every context, the
demos' ids, the instructions used and the scored continuation) for scripts that compare them byte for byte.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from icdpo_eval.errors import OptionError
from icdpo_eval.method.scorers import negative_context, positive_context


def load_doc(task: str, doc: int, dialogue: str = "pro") -> dict[str, str]:
    """Row ``doc`` of ``task``'s evaluation set (after the length filters, as lm-eval sees it)."""
    from icdpo_eval.data.datasets import TASK_DEFAULTS, eval_rows
    from icdpo_eval.method.demos import base_task

    name = base_task(task)
    if name not in TASK_DEFAULTS:
        raise OptionError(f"--task {task!r} is not one of: {', '.join(TASK_DEFAULTS)} (or their _winrate/_pairs "
                          "variants)")
    rows = eval_rows(name, dialogue)
    if not 0 <= doc < len(rows):
        raise OptionError(f"--doc {doc} is out of range: {task} has {len(rows)} documents (0..{len(rows) - 1})")
    return rows[doc]


def contexts(view: Any, task: str, row: dict[str, str], candidate: str | None = None) -> dict[str, Any]:
    """Everything ``show-prompt`` prints for one document, as data."""
    prompt = view.prepare(task, row["prompt"])
    demos = view.retrieve(task, [prompt])[0]
    tpl = view.template(task)
    eos = view.engine.tok.eos_token if view.cfg.score_eos else None
    reference = {"s": "zero_shot", "s_hat": "negative", "icl": None}[view.scorer_kind]
    cont = None if candidate is None else " " + candidate.lstrip()
    return {
        "task": task, "doc": row.get("_doc"), "id": row.get("id"),
        "options": view.cfg.results_dict(),
        **view.instructions.info,
        "template": tpl.name,
        "demos": [d.get("id") for d in demos],
        "contexts": {"positive": positive_context(prompt, demos, tpl), "negative": negative_context(prompt, demos, tpl),
                     "zero_shot": tpl.zero_shot(prompt)},
        "reference": reference,
        "continuation": {"text": "' ' + y" + (" + EOS" if eos else ""), "eos_token": eos,
                         **({"scored": cont, "scored_with_eos": cont + (eos or "")} if cont is not None else {})},
    }


def render(data: dict[str, Any], *, as_repr: bool = False) -> str:
    """The text ``show-prompt`` prints for one document."""
    fmt = repr if as_repr else str
    opts = data["options"]
    lines = [f"# {data['task']} doc id {data.get('id', '?')}: scorer={opts['scorer']}, retriever={opts['retriever']}, "
             f"k={opts['k']}, seed={opts['seed']}, dialogue={opts['dialogue']}, instructions={data['instructions']}"]
    lines.append(f"# {len(data['demos'])} demo(s), in context order (the most similar last):")
    for i, d in enumerate(data["demos"], 1):
        lines.append(f"#   [{i}] id={d}")
    ctx = data["contexts"]
    sections = [("positive context (d+, x): candidates are sampled under it; log π(y | d+, x)", ctx["positive"])]
    if data["reference"] == "zero_shot":
        sections.append(("zero-shot context (x): S's reference, log π(y | x)", ctx["zero_shot"]))
    elif data["reference"] == "negative":
        sections.append(("negative context (d-, x): Ŝ's reference, log π(y | d-, x)", ctx["negative"]))
    else:
        sections.append(("no reference context: the ICL scorer is log π(y | d+, x) alone", None))
    for title, text in sections:
        lines.append(f"===== {title} =====")
        if text is not None:
            lines.append(fmt(text))
    cont = data["continuation"]
    lines.append("===== scored continuation =====")
    eos = cont["eos_token"]
    lines.append(f"' ' + y{f' + {eos!r} (EOS, score_eos=true)' if eos else ' (no EOS, score_eos=false)'}")
    if "scored" in cont:
        lines.append(fmt(cont["scored"]))
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show-prompt", help="print the exact contexts ICDPO samples and scores a document under",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="hh_harmless_mini", help="task whose evaluation set and demo pool to use")
    p.add_argument("--doc", type=int, default=0, help="document index in the task (as lm-eval's doc_id)")
    p.add_argument("--scorer", choices=("s", "s_hat", "icl"), default=None,
                   help="s | s_hat | icl (default: the model_args' or s)")
    p.add_argument("--model_args", default="", help="as for `lm_eval --model icdpo` (key=value,...; docs/options.md)")
    p.add_argument("--candidate", default=None, help="also print this response as it is scored (' ' + y [+ EOS])")
    p.add_argument("--repr", action="store_true", help="print contexts as Python string literals")
    p.add_argument("--json", action="store_true", help="print one JSON object: contexts, demo ids, instructions, "
                   "scored continuation")


def main(args: argparse.Namespace) -> int:
    from lm_eval.utils import simple_parse_args_string

    from icdpo_eval.models.icdpo import ICDPOLM

    model_args = simple_parse_args_string(args.model_args) if args.model_args else {}
    if args.scorer:
        model_args["scorer"] = args.scorer
    view = ICDPOLM.preview(**model_args)  # the run's own parsing: errors are one line from icdpo_eval.cli
    row = {**load_doc(args.task, args.doc, view.dialogue), "_doc": args.doc}
    data = contexts(view, args.task, row, args.candidate)
    print(json.dumps(data, ensure_ascii=False, indent=1) if args.json else render(data, as_repr=args.repr))
    return 0
