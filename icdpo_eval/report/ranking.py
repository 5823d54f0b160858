"""Rank sets for the MRR metric (the paper's metric 3) and ``icdpo-eval build-rank-set``.

    icdpo-eval build-rank-set --task hh_harmless --base X --judge openai:gpt-4 --n-docs 200 --out rank.jsonl
    ICDPO_RANK_SET=rank.jsonl lm_eval --model icdpo --model_args scorer=s_hat --tasks hh_harmless_rank

For each of ``--n-docs`` prompts of the task (its first rows, in order), the base model samples 3 ICL
candidates (K retrieved demos in the positive template, top-p 0.8), and a strong judge orders them
(§4.2: "3 candidate responses sampled from the base model through ICL and sorted by GPT-4 as the
ground truth"):

* ``openai[:MODEL]`` (default; model default ``$ICDPO_JUDGE_MODEL`` or gpt-4), ``--protocol``:

  - ``listwise`` (default, the paper's): ONE request per prompt shows the dialogue and the candidates
    labelled [1], [2], [3] (in candidate order) and asks for a strict order, best first (``2 > 1 > 3``,
    no ties; :class:`icdpo_eval.judges.listwise.ListwiseJudge`). An answer still unparsable after one
    re-ask leaves the row without an order (a judge error).
  - ``pairwise``: the pairwise judge on all 3 pairs (both orders, or one under
    ``$ICDPO_JUDGE_PROTOCOL=paper``); each candidate gets 1 point per win and 0.5 per tie (Copeland)
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
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

N_CANDIDATES = 3
PROTOCOLS = ("listwise", "pairwise")
DEFAULT_PROTOCOL = "listwise"


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


def _rm_judgments(name: str, prompts: list[str], candidates: list[list[str]]) -> tuple[list[RowJudgment], str]:
    from icdpo_eval.judges.reward_model import get_judge

    rm = get_judge(name or "auto")
    flat = [(p, c) for p, cs in zip(prompts, candidates) for c in cs]
    rewards = rm.score([p for p, _ in flat], [c for _, c in flat])
    out, k = [], 0
    for cs in candidates:
        r = rewards[k:k + len(cs)]
        k += len(cs)
        order = sorted(range(len(cs)), key=lambda c: (-r[c], c))
        out.append(RowJudgment(order, [c for c in order if r[c] == r[order[0]]]))
    return out, f"rm:{rm.resolved_name}"


def _pairwise_judgments(name: str, prompts: list[str], candidates: list[list[str]]) -> tuple[list[RowJudgment],
                                                                                           str, int]:
    from icdpo_eval.judges.pairwise import WORKERS_ENV, PairwiseJudge, judge_from_env, one_direction_from_env

    # a named model gets the same environment settings (protocol, workers) as the default judge
    pj = PairwiseJudge(name, one_direction=one_direction_from_env(),
                       max_workers=int(os.environ.get(WORKERS_ENV, "").strip() or 8)) if name else judge_from_env()
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


def _listwise_judgments(name: str, prompts: list[str], candidates: list[list[str]]) -> tuple[list[RowJudgment],
                                                                                           str, int]:
    from icdpo_eval.judges.listwise import listwise_from_env

    lj = listwise_from_env(name or None)
    rankings = lj.rank(prompts, candidates, ids=[str(d) for d in range(len(prompts))])
    out = [RowJudgment(r.order, [r.order[0]]) if r.order is not None else RowJudgment(None, []) for r in rankings]
    for r in rankings:
        if r.error:
            log.warning("rank set: judge error: %s", r.error)
    return out, lj.name, sum(r.order is None for r in rankings)


def judge_orders(judge: str, prompts: list[str], candidates: list[list[str]],
                 protocol: str = DEFAULT_PROTOCOL) -> tuple[list[RowJudgment], str, int]:
    """Judge each prompt's candidates with ``judge`` (``openai[:MODEL]`` with ``protocol`` listwise or
    pairwise, or ``rm[:NAME]``); returns (one :class:`RowJudgment` per prompt, judge name, number of
    unparsable judge answers)."""
    kind, _, name = judge.partition(":")
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if kind == "rm":
        rows, rm_name = _rm_judgments(name, prompts, candidates)
        return rows, rm_name, 0
    if kind != "openai":
        raise ValueError(f"--judge {judge!r}: use openai[:MODEL] (LLM judge) or rm[:NAME] (reward model)")
    if protocol == "listwise":
        return _listwise_judgments(name, prompts, candidates)
    return _pairwise_judgments(name, prompts, candidates)


def build_rank_set(task: str, out: str, *, base: str | None = None, judge: str = "openai", n_docs: int = 200,
                   k: int = 2, retriever: str = "random", seed: int = 1234, max_new_tokens: int | None = None,
                   top_p: float = 0.8, demo_pool: str | None = None, batch_size: int = 1,
                   protocol: str = DEFAULT_PROTOCOL, preset: str = "paper") -> Path:
    """Sample 3 candidates per prompt exactly as ``--model icdpo`` does under ``preset`` (its retriever,
    template, sampling settings and post-processing; ``max_new_tokens`` None = the task's: 128 for HH,
    200 for SyntheticGPT) and have ``judge`` rank them."""
    from icdpo_eval import __version__
    from icdpo_eval.data import embedded
    from icdpo_eval.data.datasets import TASK_DEFAULTS, load_pairs
    from icdpo_eval.engine import stable_seed
    from icdpo_eval.method.prompts import postprocess
    from icdpo_eval.method.scorers import positive_context
    from icdpo_eval.models.icdpo import ICDPOLM

    if task not in TASK_DEFAULTS:
        raise ValueError(f"--task {task!r} is not one of: {', '.join(TASK_DEFAULTS)}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if judge.partition(":")[0] == "openai":
        from icdpo_eval.judges.pairwise import require_api_key

        require_api_key()  # fail before any model work when no key is set
    t = TASK_DEFAULTS[task]
    rows = load_pairs(t.dataset, t.subset, t.eval_split)[:n_docs]
    if not rows:
        raise ValueError(f"task {task} has no rows")
    if max_new_tokens is None:
        max_new_tokens = 200 if t.dataset == "synthetic-gpt" else 128
    icdpo = ICDPOLM(pretrained=base, k=k, retriever=retriever, seed=seed, demo_pool=demo_pool, preset=preset,
                    n=N_CANDIDATES)
    params = icdpo.sampling_params({"max_gen_toks": max_new_tokens, "top_p": top_p, "do_sample": True})
    tpl = icdpo.template(task)
    legacy_post = icdpo.settings.postprocess == "legacy"
    prompts = [r["prompt"] for r in rows]
    candidates: list[list[str]] = []
    for s in tqdm(range(0, len(rows), batch_size), desc="rank set: sampling candidates"):
        chunk = prompts[s:s + batch_size]
        demos = icdpo.retrieve(task, chunk)
        samples = icdpo.engine.sample([positive_context(p, d, tpl) for p, d in zip(chunk, demos)], N_CANDIDATES,
                                      params=params, seeds=[stable_seed(seed, p) for p in chunk],
                                      docs_per_batch=len(chunk))
        candidates += [[postprocess(x.text, legacy=legacy_post) for x in ss] for ss in samples]
    judged, judge_name, errors = judge_orders(judge, prompts, candidates, protocol)
    failed = sum(j.order is None for j in judged)
    tied = sum(j.best_tied for j in judged)
    prov = {"task": task, "base": base or embedded.BASE_ALIAS, "judge": judge_name,
            "protocol": "reward" if judge.partition(":")[0] == "rm" else protocol, "n": N_CANDIDATES, "k": k,
            "retriever": retriever, "seed": seed, "top_p": top_p, "max_new_tokens": max_new_tokens,
            "preset": preset, "top_k": params.top_k, "temperature": params.temperature,
            "judge_errors": errors, "rows_failed": failed, "rows_tied": tied, "icdpo_eval": __version__}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r, cs, j in zip(rows, candidates, judged):
            fh.write(json.dumps(rank_row(r["id"], r["prompt"], cs, j, task, prov)) + "\n")
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-rank-set", help="sample 3 ICL candidates per prompt and have a judge rank them "
                       "(the MRR task's data)")
    p.add_argument("--task", required=True, help="hh_harmless | hh_helpful | synthetic_gpt | hh_harmless_mini")
    p.add_argument("--out", required=True, help="output JSONL (then: ICDPO_RANK_SET=FILE lm_eval ... "
                   "--tasks hh_harmless_rank)")
    p.add_argument("--base", default=None, help="base model (default: the embedded Gemma-3-270M)")
    p.add_argument("--judge", default="openai", help="openai[:MODEL] (LLM judge, OPENAI_* env) or "
                   "rm[:NAME] (reward model; rm = auto)")
    p.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=PROTOCOLS,
                   help="how the openai judge orders the 3 candidates: listwise (default, the paper's: one "
                   "request sorts them) or pairwise (3 pairs, Copeland points)")
    p.add_argument("--n-docs", type=int, default=200)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--retriever", default="random", choices=["random", "bm25", "bm25_sbert"])
    p.add_argument("--demo-pool", default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's (HH 128, SyntheticGPT 200)")
    p.add_argument("--preset", default="paper", choices=["paper", "legacy"],
                   help="sample candidates as `--model icdpo` does under this preset (docs/fidelity.md)")
    p.add_argument("--top-p", type=float, default=0.8)
    p.add_argument("--batch-size", type=int, default=1, help="prompts decoded together")


def main(args: argparse.Namespace) -> int:
    path = build_rank_set(args.task, args.out, base=args.base, judge=args.judge, n_docs=args.n_docs, k=args.k,
                          retriever=args.retriever, seed=args.seed, max_new_tokens=args.max_new_tokens,
                          top_p=args.top_p, demo_pool=args.demo_pool, batch_size=args.batch_size,
                          protocol=args.protocol, preset=args.preset)
    print(f"wrote {path}; run: ICDPO_RANK_SET={path} lm_eval --model icdpo --tasks hh_harmless_rank")
    return 0
