"""``icdpo-eval show-prompt``: the exact contexts ICDPO samples and scores one document under.

    icdpo-eval show-prompt --task hh_harmless_mini --doc 0 --scorer s_hat
    icdpo-eval show-prompt --task hh_harmless_mini --doc 3 --model_args retriever=bm25_sbert,preset=legacy --repr

Prints the retrieved demos, the positive in-context prompt (d+, x) the candidates are sampled under,
the reference context of the scorer (zero-shot x for S, the negative prompt (d-, x) for Ŝ, none for
ICL) and how a candidate y is appended (``" " + y`` plus EOS when ``score_eos`` is on). It takes the
same ``--model_args`` as ``lm_eval --model icdpo`` (sampling-only ones are accepted and ignored) and
builds the demos exactly as a run does (same retriever, seed, pool and preset), loading only the base
model's tokenizer, never its weights. ``--repr`` prints each context as a Python string literal, so
every newline and space is visible.
"""

from __future__ import annotations

import argparse
import inspect
from types import SimpleNamespace
from typing import Any

from icdpo_eval.data import embedded
from icdpo_eval.method.scorers import SCORERS, negative_context, positive_context
from icdpo_eval.models.args import as_bool, as_int, check_unknown, choice
from icdpo_eval.models.base import DemoRetrieval, MethodLM

# ICDPOLM's model_args that change sampling only: accepted, not needed to show the contexts
_SAMPLING_ONLY = {"select", "n", "top_p", "top_k", "temperature", "max_new_tokens", "dtype", "device", "batch_size",
                  "max_length", "revision", "empty"}


def parse_model_args(text: str | None) -> dict[str, str]:
    """``"a=1,b=x"`` -> ``{"a": "1", "b": "x"}`` (lm-eval's ``--model_args`` syntax)."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--model_args entry {part!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


class PromptPreview(DemoRetrieval, MethodLM):
    """ICDPO's demo retrieval and templates without the model weights (tokenizer only)."""

    method = "icdpo"

    def __init__(self, model_args: dict[str, Any]) -> None:
        super().__init__()
        from icdpo_eval.models.icdpo import ICDPOLM

        allowed = set(inspect.signature(ICDPOLM.__init__).parameters) - {"self", "unknown"}
        check_unknown(self.method, {k: v for k, v in model_args.items() if k not in allowed})
        a = {k: v for k, v in model_args.items() if k not in _SAMPLING_ONLY}
        self.scorer_kind = choice("scorer", a.get("scorer", "s"), SCORERS)
        self.set_settings(a.get("preset", "paper"), template=a.get("template"), score_eos=a.get("score_eos"),
                          empty=model_args.get("empty"), bm25_tokens=a.get("bm25_tokens"))
        self.seed = as_int("seed", a.get("seed", 1234))
        self.setup_retrieval(k=a.get("k", 2), retriever=a.get("retriever", "random"), sbert=a.get("sbert"),
                             bm25_window=a.get("bm25_window", 30), bm25_top=a.get("bm25_top", 20),
                             demo_pool=a.get("demo_pool"), demo_source=a.get("demo_source", "raw"))
        self.pretrained = a.get("pretrained") or embedded.BASE_ALIAS
        from transformers import AutoTokenizer

        trust = as_bool("trust_remote_code", a.get("trust_remote_code", False))
        tok = AutoTokenizer.from_pretrained(embedded.resolve(self.pretrained, embedded.BASE_ALIAS),
                                            trust_remote_code=trust)
        self.engine = SimpleNamespace(tok=tok, device="cpu")

    def eos_text(self) -> str | None:
        return self.engine.tok.eos_token if self.settings.score_eos else None


def load_doc(task: str, doc: int) -> dict[str, str]:
    """Row ``doc`` of ``task``'s evaluation set (after the length filters, as lm-eval sees it)."""
    from icdpo_eval.data.datasets import TASK_DEFAULTS, load_pairs
    from icdpo_eval.method.demos import base_task

    name = base_task(task)
    if name not in TASK_DEFAULTS:
        raise ValueError(f"--task {task!r} is not one of: {', '.join(TASK_DEFAULTS)} (or their _winrate/_rank/_pairs "
                         "variants)")
    t = TASK_DEFAULTS[name]
    rows = load_pairs(t.dataset, t.subset, t.eval_split)
    if not 0 <= doc < len(rows):
        raise ValueError(f"--doc {doc} is out of range: {task} has {len(rows)} documents (0..{len(rows) - 1})")
    return rows[doc]


def render(view: PromptPreview, task: str, row: dict[str, str], *, as_repr: bool = False) -> str:
    """The text ``show-prompt`` prints for one document."""
    prompt = row["prompt"]
    demos = view.retrieve(task, [prompt])[0]
    tpl = view.template(task)
    fmt = repr if as_repr else str
    lines = [f"# {task} doc id {row.get('id', '?')}: preset={view.settings.preset}, template={tpl.name}, "
             f"scorer={view.scorer_kind}, retriever={view.retriever_kind}, k={view.k}, seed={view.seed}"]
    lines.append(f"# {len(demos)} demo(s), in context order (the most similar last):")
    for i, d in enumerate(demos, 1):
        lines.append(f"#   [{i}] id={d.get('id', '?')}")
    sections = [("positive context (d+, x): candidates are sampled under it; log π(y | d+, x)",
                 positive_context(prompt, demos, tpl))]
    if view.scorer_kind == "s":
        sections.append(("zero-shot context (x): S's reference, log π(y | x)", tpl.zero_shot(prompt)))
    elif view.scorer_kind == "s_hat":
        sections.append(("negative context (d-, x): Ŝ's reference, log π(y | d-, x)",
                         negative_context(prompt, demos, tpl)))
    else:
        sections.append(("no reference context: the ICL scorer is log π(y | d+, x) alone", None))
    for title, text in sections:
        lines.append(f"===== {title} =====")
        if text is not None:
            lines.append(fmt(text))
    eos = view.eos_text()
    lines.append("===== scored continuation =====")
    lines.append(f"' ' + y{f' + {eos!r} (EOS, score_eos=true)' if eos else ' (no EOS, score_eos=false)'}")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show-prompt", help="print the exact contexts ICDPO samples and scores a document under",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="hh_harmless_mini", help="task whose evaluation set and demo pool to use")
    p.add_argument("--doc", type=int, default=0, help="document index in the task (as lm-eval's doc_id)")
    p.add_argument("--scorer", choices=SCORERS, default=None, help="s | s_hat | icl (default: model_args' or s)")
    p.add_argument("--model_args", default="", help="as for `lm_eval --model icdpo` (key=value,...)")
    p.add_argument("--repr", action="store_true", help="print contexts as Python string literals")


def main(args: argparse.Namespace) -> int:
    model_args = parse_model_args(args.model_args)  # errors: one line from icdpo_eval.cli
    if args.scorer:
        model_args["scorer"] = args.scorer
    row = load_doc(args.task, args.doc)
    view = PromptPreview(model_args)
    print(render(view, args.task, row, as_repr=args.repr))
    return 0
