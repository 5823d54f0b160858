"""Rank sets for the MRR metric (the paper's metric 3) and ``icdpo-eval build-rank-set``.

    icdpo-eval build-rank-set --task hh_harmless --model_args pretrained=X --judge openai:gpt-4 --n-docs 200 \
        --out rank.jsonl
    lm_eval --model icdpo --model_args scorer=s_hat --tasks hh_harmless_rank --metadata '{"rank_set": "rank.jsonl"}'

``--model_args`` are ``--model icdpo``'s (the same declaration: ``pretrained``, ``k``, ``retriever``, ``seed``,
``demo_pool``, ``dialogue``, ``instructions``, ...): the candidates are sampled exactly as that model samples.

For each of ``--n-docs`` prompts of the task (its first rows, in order), the base model samples 3 ICL
candidates (K retrieved demos in the positive template, top-p 0.8), and a strong judge orders them
(§4.2: "3 candidate responses sampled from the base model through ICL and sorted by GPT-4 as the
ground truth"):

* ``openai[:MODEL]`` (default; model default the task setting ``judge_model``, gpt-4), ``--protocol``:

  - ``listwise`` (default, the paper's): ONE request per prompt shows the dialogue and the candidates
    labelled [1], [2], [3] (in candidate order) and asks for a strict order, best first (``2 > 1 > 3``,
    no ties; :class:`icdpo_eval.judges.listwise.ListwiseJudge`). An answer still unparsable after one
    re-ask leaves the row without an order (a judge error).
  - ``pairwise``: the pairwise judge on all 3 pairs (both orders, or one under
    ``--metadata '{"judge_protocol": "paper"}'``); each candidate gets 1 point per win and 0.5 per tie (Copeland)
    and the order is by points. Unparsable comparisons count nothing (and are counted); a row with no
    usable comparison has no order.

* ``rm[:NAME]``: a reward model (``RewardModelJudge``; ``rm`` alone = ``auto``), ordered by reward.

**Ties for the best are reported, not resolved.** Pairwise Copeland points and equal rewards can
tie at the top: such a row has ``best_tied: true`` and ``judge_best_set`` = every tied-best index
(``judge_best`` is the lowest of them, for old readers); the MRR task leaves it out of ``mrr`` and
counts it (``judge_tied``), as it does rows without an order (``judge_failed``).

Each row of the JSONL: ``id``, ``prompt``, ``candidates``, ``judge_order`` (best first; null: judge
error), ``judge_best`` (null: judge error), ``best_tied``, ``judge_best_set``, ``source_task`` (its
demo pool is the scorers' default pool) and ``provenance`` (base, judge, protocol, seed, n, k,
``judge_errors`` = unparsable judge answers, ``rows_failed``, ``rows_tied``, package version).

**A judge that fails is an error.** When fewer than ``--min-judged`` (default 0.5) of the rows get an order,
nothing is written and the command fails naming the counts (every verdict received stays in the judge's
cache, so the rerun pays only for the rest).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from icdpo_eval.config import declared
from icdpo_eval.config.declared import opt, required
from icdpo_eval.data.datasets import TOP_P
from icdpo_eval.errors import OptionError
from icdpo_eval.judges.pairwise import JudgeError
from icdpo_eval.runtime import atomic_write

log = logging.getLogger(__name__)

N_CANDIDATES = 3
PROTOCOLS = ("listwise", "pairwise")
DEFAULT_PROTOCOL = "listwise"
DEFAULT_MIN_JUDGED = 0.5  # the share of rows that must get a judge order


@dataclass
class RowJudgment:
    """A judge's verdict on one prompt's candidates: ``order`` best first (None: the judge gave no
    usable order) and ``best_set``, every candidate tied for the best ([] without an order)."""

    order: list[int] | None
    best_set: list[int]

    @property
    def best(self) -> int | None:
        return self.order[0] if self.order else None

    @property
    def best_tied(self) -> bool:
        return len(self.best_set) > 1


def copeland_order(n: int, outcomes: dict[tuple[int, int], str]) -> tuple[list[int], list[int]]:
    """Order candidates by pairwise points (win 1, tie 0.5); ``outcomes[(i, j)]`` is i's outcome
    against j ("win"/"tie"/"loss"; "error" counts nothing). Returns (order best first, ties broken
    by the lower index; the best set: every candidate with the top score, more than one when tied)."""
    points = [0.0] * n
    for (i, j), out in outcomes.items():
        if out == "win":
            points[i] += 1
        elif out == "loss":
            points[j] += 1
        elif out == "tie":
            points[i] += 0.5
            points[j] += 0.5
    order = sorted(range(n), key=lambda c: (-points[c], c))
    return order, [c for c in order if points[c] == points[order[0]]]


def _rm_judgments(name: str, prompts: list[str], candidates: list[list[str]], cfg) -> tuple[list[RowJudgment], str]:
    from icdpo_eval.judges.reward_model import get_judge

    rm = get_judge(name or cfg.rm, cfg.rm_dtype, cfg.rm_batch_size)
    flat = [(p, c) for p, cs in zip(prompts, candidates) for c in cs]
    rewards = rm.score([p for p, _ in flat], [c for _, c in flat])
    out, k = [], 0
    for cs in candidates:
        r = rewards[k:k + len(cs)]
        k += len(cs)
        order = sorted(range(len(cs)), key=lambda c: (-r[c], c))
        out.append(RowJudgment(order, [c for c in order if r[c] == r[order[0]]]))
    return out, f"rm:{rm.resolved_name}"


def _judge_settings(name: str, cfg):
    from dataclasses import replace

    from icdpo_eval.judges.pairwise import JudgeSettings

    s = JudgeSettings.of(cfg)
    return replace(s, model=name) if name else s


def _pairwise_judgments(name: str, prompts: list[str], candidates: list[list[str]], cfg) -> tuple[list[RowJudgment],
                                                                                                str, int]:
    from icdpo_eval.judges.pairwise import judge_for

    pj = judge_for(_judge_settings(name, cfg))
    items, pairs = [], []
    for d, cs in enumerate(candidates):
        for i in range(len(cs)):
            for j in range(i + 1, len(cs)):
                items.append((d, i, j))
                pairs.append((cs[i], cs[j]))
    verdicts = pj.judge([prompts[d] for d, _, _ in items], pairs, ids=[f"{d}:{i}v{j}" for d, i, j in items])
    per_doc: list[dict[tuple[int, int], str]] = [{} for _ in candidates]
    errors = 0
    for (d, i, j), v in zip(items, verdicts):
        per_doc[d][(i, j)] = v.outcome
        errors += v.outcome == "error"
    out = []
    for d, cs in enumerate(candidates):
        if per_doc[d] and all(o == "error" for o in per_doc[d].values()):
            out.append(RowJudgment(None, []))  # no usable comparison: no order, not an all-way tie
        else:
            out.append(RowJudgment(*copeland_order(len(cs), per_doc[d])))
    return out, pj.name, errors


def _listwise_judgments(name: str, prompts: list[str], candidates: list[list[str]], cfg) -> tuple[list[RowJudgment],
                                                                                                str, int]:
    from icdpo_eval.judges.listwise import listwise_for

    lj = listwise_for(_judge_settings(name, cfg))
    rankings = lj.rank(prompts, candidates, ids=[str(d) for d in range(len(prompts))])
    out = [RowJudgment(r.order, [r.order[0]]) if r.order is not None else RowJudgment(None, []) for r in rankings]
    for r in rankings:
        if r.error:
            log.warning("rank set: judge error: %s", r.error)
    return out, lj.name, sum(r.order is None for r in rankings)


def judge_orders(judge: str, prompts: list[str], candidates: list[list[str]],
                 protocol: str = DEFAULT_PROTOCOL, settings: dict | None = None) -> tuple[list[RowJudgment], str, int]:
    """Judge each prompt's candidates with ``judge`` (``openai[:MODEL]`` with ``protocol`` listwise or
    pairwise, or ``rm[:NAME]``; the judge's settings are the task settings ``settings``, e.g.
    ``judge_protocol``); returns (one :class:`RowJudgment` per prompt, judge name, number of unparsable judge
    answers)."""
    from icdpo_eval.config.options import TASK_SETTINGS

    cfg = TASK_SETTINGS.parse(settings or {}, where="--metadata task setting")
    kind, _, name = judge.partition(":")
    if protocol not in PROTOCOLS:
        raise OptionError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if kind == "rm":
        rows, rm_name = _rm_judgments(name, prompts, candidates, cfg)
        return rows, rm_name, 0
    if kind != "openai":
        raise OptionError(f"--judge {judge!r}: use openai[:MODEL] (LLM judge) or rm[:NAME] (reward model)")
    if protocol == "listwise":
        return _listwise_judgments(name, prompts, candidates, cfg)
    return _pairwise_judgments(name, prompts, candidates, cfg)


def build_rank_set(task: str, out: str, *, model_args: dict | None = None, judge: str = "openai", n_docs: int = 200,
                   max_new_tokens: int | None = None, top_p: float = TOP_P, batch_size: int = 1,
                   protocol: str = DEFAULT_PROTOCOL, settings: dict | None = None,
                   min_judged: float = DEFAULT_MIN_JUDGED) -> Path:
    """Sample 3 candidates per prompt exactly as ``--model icdpo`` with ``model_args`` does (its retriever,
    template, dialogue preparation, sampling settings and post-processing; ``max_new_tokens`` None = the task's:
    128 for HH, 200 for SyntheticGPT) and have ``judge`` rank them; fail when fewer than ``min_judged`` of the
    rows get an order."""
    from icdpo_eval import __version__
    from icdpo_eval.data.datasets import TASK_DEFAULTS, eval_rows, task_limits
    from icdpo_eval.models.icdpo import ICDPOLM

    if task not in TASK_DEFAULTS:
        raise OptionError(f"--task {task!r} is not one of: {', '.join(TASK_DEFAULTS)}")
    if protocol not in PROTOCOLS:
        raise OptionError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if not 0.0 < min_judged <= 1.0:
        raise OptionError(f"--min-judged {min_judged}: must be in (0, 1]")
    if judge.partition(":")[0] == "openai":
        from icdpo_eval.judges.pairwise import require_api_key

        require_api_key()  # fail before any model work when no key is set
    args = {**(model_args or {}), "n": N_CANDIDATES}
    ICDPOLM.OPTIONS.parse(args, where="--model_args")  # one line naming a bad option, before anything loads
    rows = eval_rows(task, str(args.get("dialogue", "pro")))[:n_docs]
    if not rows:
        raise OptionError(f"task {task} has no rows")
    if max_new_tokens is None:
        max_new_tokens = task_limits(task).max_gen_toks
    icdpo = ICDPOLM(**args)
    params = icdpo.sampling_params({"max_gen_toks": max_new_tokens, "top_p": top_p, "do_sample": True}, task)
    prompts = [icdpo.prepare(task, r["prompt"]) for r in rows]
    candidates: list[list[str]] = []
    for s in tqdm(range(0, len(rows), batch_size), desc="rank set: sampling candidates"):
        # the method's own sampling (ICDPOLM.choices), every candidate kept: nothing selected, nothing scored
        candidates += [c.candidates for c in icdpo.choices(task, prompts[s:s + batch_size], params, select="single")]
    judged, judge_name, errors = judge_orders(judge, [r["prompt"] for r in rows], candidates, protocol, settings)
    failed = sum(j.order is None for j in judged)
    tied = sum(j.best_tied for j in judged)
    if len(rows) - failed < min_judged * len(rows):
        raise JudgeError(f"build-rank-set: the judge {judge_name} ordered only {len(rows) - failed} of {len(rows)} "
                         f"rows ({errors} unparsable answers), fewer than --min-judged {min_judged:g}; nothing written "
                         "(verdicts received are cached: a rerun asks only for the rest)")
    prov = {"task": task, "model_args": {k: v for k, v in icdpo.cfg.results_dict().items()}, "judge": judge_name,
            "protocol": "reward" if judge.partition(":")[0] == "rm" else protocol, "n": N_CANDIDATES,
            "top_p": params.top_p, "max_new_tokens": max_new_tokens, "top_k": params.top_k,
            "temperature": params.temperature, "judge_errors": errors, "rows_failed": failed, "rows_tied": tied,
            "icdpo_eval": __version__}
    path = Path(out)
    atomic_write(path, lambda fh: fh.writelines(json.dumps(rank_row(r["id"], r["prompt"], cs, j, task, prov)) + "\n"
                                                for r, cs, j in zip(rows, candidates, judged)))
    log.info("rank set: %d prompts -> %s (judge %s, protocol %s: %d unparsable judge answers, %d rows without "
             "an order, %d rows with a tied best)", len(rows), path, judge_name, prov["protocol"], errors, failed,
             tied)
    return path


def rank_row(doc_id: str, prompt: str, candidates: list[str], j: RowJudgment, task: str,
             provenance: dict) -> dict:
    """One rank-set JSONL row (see the module docstring)."""
    return {"id": doc_id, "prompt": prompt, "candidates": candidates, "judge_order": j.order,
            "judge_best": j.best, "best_tied": j.best_tied, "judge_best_set": j.best_set, "source_task": task,
            "provenance": provenance}


@dataclass
class RankSetOptions:
    """Every option of ``icdpo-eval build-rank-set``, declared once (:mod:`icdpo_eval.config.declared`)."""

    task: str = required("hh_harmless | hh_helpful | synthetic_gpt | hh_harmless_mini")
    out: str = required("output JSONL (then: lm_eval ... --tasks hh_harmless_rank --metadata "
                        "'{\"rank_set\": \"FILE\"}')")
    model_args: str = opt("", "--model icdpo's options for sampling the candidates (pretrained, k, retriever, seed, "
                          "demo_pool, dialogue, ...; docs/options.md)")
    judge: str = opt("openai", "openai[:MODEL] (LLM judge, OPENAI_* env) or rm[:NAME] (reward model; rm = the task "
                     "setting rm, auto)")
    protocol: str = opt(DEFAULT_PROTOCOL, "how the openai judge orders the 3 candidates: listwise (default, the "
                        "paper's: one request sorts them) or pairwise (3 pairs, Copeland points)")
    metadata: str = opt("", "task settings of the judge as JSON, e.g. '{\"judge_protocol\": \"paper\", "
                        "\"judge_workers\": 4}' (docs/options.md)")
    n_docs: int = opt(200, "the first N rows of the task (%(default)s)")
    max_new_tokens: int | None = opt(None, "default: the task's (HH 128, SyntheticGPT 200)")
    top_p: float = opt(TOP_P, "(%(default)s: the tasks' own)")
    batch_size: int = opt(1, "prompts decoded together (%(default)s)")
    min_judged: float = opt(DEFAULT_MIN_JUDGED, "fail (and write nothing) when fewer than this share of rows get a "
                            "judge order (%(default)s)")

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise OptionError(f"--protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        if not 0.0 < self.min_judged <= 1.0:
            raise OptionError(f"--min-judged {self.min_judged}: must be in (0, 1]")
        for name in ("n_docs", "batch_size", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        if not 0.0 < self.top_p <= 1.0:
            raise OptionError(f"--top-p must be in (0, 1] (got {self.top_p})")


def add_parser(sub: argparse._SubParsersAction) -> None:
    declared.add_parser(sub, "build-rank-set", RankSetOptions, description=__doc__,
                        help="sample 3 ICL candidates per prompt and have a judge rank them (the MRR task's data)")


def main(args: argparse.Namespace) -> int:
    from lm_eval.utils import simple_parse_args_string

    args = declared.from_args(RankSetOptions, args)  # the declared checks: one line from icdpo_eval.cli
    try:
        metadata = json.loads(args.metadata) if args.metadata else {}
    except ValueError as e:
        raise OptionError(f"--metadata {args.metadata!r}: not JSON ({e})") from None
    path = build_rank_set(args.task, args.out, model_args=simple_parse_args_string(args.model_args),
                          judge=args.judge, n_docs=args.n_docs, max_new_tokens=args.max_new_tokens,
                          top_p=args.top_p, batch_size=args.batch_size, protocol=args.protocol, settings=metadata,
                          min_judged=args.min_judged)
    print(f"wrote {path}; run: lm_eval --model icdpo --tasks hh_harmless_rank --metadata "
          f"'{{\"rank_set\": \"{path}\"}}'")
    return 0
