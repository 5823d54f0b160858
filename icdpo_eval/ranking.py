"""Rank sets for the MRR metric (the paper's metric 3) and ``icdpo-eval build-rank-set``.

    icdpo-eval build-rank-set --task hh_harmless --base X --judge openai:gpt-4 --n-docs 200 --out rank.jsonl
    ICDPO_RANK_SET=rank.jsonl lm_eval --model icdpo --model_args scorer=s_hat --tasks hh_harmless_rank

For each of ``--n-docs`` prompts of the task (its first rows, in order), the base model samples 3 ICL
candidates (K retrieved demos in the positive template, top-p 0.8), and a strong judge orders them:

* ``openai[:MODEL]`` (default; the pairwise LLM judge, model default ``$ICDPO_JUDGE_MODEL`` or gpt-4):
  all 3 pairs, both orders; each candidate gets 1 point per win and 0.5 per tie (Copeland), the
  order is by points (ties keep the lower index first). ``best_tied`` marks rows whose top is shared.
* ``rm[:NAME]``: a reward model (``RewardModelJudge``; ``rm`` alone = ``auto``), ordered by reward.

Each row of the JSONL: ``id``, ``prompt``, ``candidates``, ``judge_order`` (best first),
``judge_best``, ``best_tied``, ``source_task`` (its demo pool is the scorers' default pool) and
``provenance`` (base, judge, seed, n, k, package version). Unparsable judge answers make the row's
order come from the remaining comparisons and are counted in the provenance.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

N_CANDIDATES = 3


def copeland_order(n: int, outcomes: dict[tuple[int, int], str]) -> tuple[list[int], bool]:
    """Order candidates by pairwise points (win 1, tie 0.5); ``outcomes[(i, j)]`` is i's outcome
    against j ("win"/"tie"/"loss"; "error" counts nothing). Returns (order best first, top tied)."""
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
    return order, n > 1 and points[order[0]] == points[order[1]]


def judge_orders(judge: str, prompts: list[str], candidates: list[list[str]]) -> tuple[list[list[int]], list[bool],
                                                                                       str, int]:
    """Order each prompt's candidates with ``judge``; returns (orders, best_tied, judge name, errors)."""
    kind, _, name = judge.partition(":")
    if kind == "rm":
        from icdpo_eval.judges.reward_model import get_judge

        rm = get_judge(name or "auto")
        flat = [(p, c) for p, cs in zip(prompts, candidates) for c in cs]
        rewards = rm.score([p for p, _ in flat], [c for _, c in flat])
        orders, tied, k = [], [], 0
        for cs in candidates:
            r = rewards[k:k + len(cs)]
            k += len(cs)
            o = sorted(range(len(cs)), key=lambda c: (-r[c], c))
            orders.append(o)
            tied.append(len(cs) > 1 and r[o[0]] == r[o[1]])
        return orders, tied, f"rm:{rm.resolved_name}", 0
    if kind != "openai":
        raise ValueError(f"--judge {judge!r}: use openai[:MODEL] (pairwise LLM judge) or rm[:NAME] (reward model)")
    from icdpo_eval.judges.pairwise import PairwiseJudge, judge_from_env

    pj = PairwiseJudge(name) if name else judge_from_env()
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
    res = [copeland_order(len(cs), per_doc[d]) for d, cs in enumerate(candidates)]
    return [o for o, _ in res], [t for _, t in res], pj.name, errors


def build_rank_set(task: str, out: str, *, base: str | None = None, judge: str = "openai", n_docs: int = 200,
                   k: int = 2, retriever: str = "random", seed: int = 1234, max_new_tokens: int = 128,
                   top_p: float = 0.8, demo_pool: str | None = None, batch_size: int = 1) -> Path:
    from icdpo_eval import __version__, embedded
    from icdpo_eval.data import TASK_DEFAULTS, load_pairs
    from icdpo_eval.demos import DemoStore
    from icdpo_eval.engine import Engine, stable_seed
    from icdpo_eval.prompts import TURN_MARKERS, postprocess
    from icdpo_eval.retrieval import make_retriever
    from icdpo_eval.scorers import positive_context

    if task not in TASK_DEFAULTS:
        raise ValueError(f"--task {task!r} is not one of: {', '.join(TASK_DEFAULTS)}")
    if judge.partition(":")[0] == "openai":
        from icdpo_eval.judges.pairwise import require_api_key

        require_api_key()  # fail before any model work when no key is set
    t = TASK_DEFAULTS[task]
    rows = load_pairs(t.dataset, t.subset, t.eval_split)[:n_docs]
    if not rows:
        raise ValueError(f"task {task} has no rows")
    pool = DemoStore(demo_pool).pool(task)
    retr = make_retriever(retriever, pool, seed=seed)
    engine = Engine.load(embedded.resolve(base, embedded.BASE_ALIAS))
    prompts = [r["prompt"] for r in rows]
    candidates: list[list[str]] = []
    for s in tqdm(range(0, len(rows), batch_size), desc="rank set: sampling candidates"):
        chunk = prompts[s:s + batch_size]
        demos = [[pool[i] for i in ids] for ids in retr.retrieve_many(chunk, k)]
        samples = engine.sample([positive_context(p, d) for p, d in zip(chunk, demos)], N_CANDIDATES,
                                max_new_tokens=max_new_tokens, top_p=top_p, stop=list(TURN_MARKERS),
                                seeds=[stable_seed(seed, p) for p in chunk], docs_per_batch=len(chunk))
        candidates += [[postprocess(x.text) for x in ss] for ss in samples]
    orders, tied, judge_name, errors = judge_orders(judge, prompts, candidates)
    prov = {"task": task, "base": base or embedded.BASE_ALIAS, "judge": judge_name, "n": N_CANDIDATES, "k": k,
            "retriever": retriever, "seed": seed, "top_p": top_p, "max_new_tokens": max_new_tokens,
            "judge_errors": errors, "icdpo_eval": __version__}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r, cs, o, tie in zip(rows, candidates, orders, tied):
            fh.write(json.dumps({"id": r["id"], "prompt": r["prompt"], "candidates": cs, "judge_order": o,
                                 "judge_best": o[0], "best_tied": tie, "source_task": task,
                                 "provenance": prov}) + "\n")
    log.info("rank set: %d prompts -> %s (judge %s, %d judge errors, %d tied tops)", len(rows), path,
             judge_name, errors, sum(tied))
    return path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-rank-set", help="sample 3 ICL candidates per prompt and have a judge rank them "
                       "(the MRR task's data)")
    p.add_argument("--task", required=True, help="hh_harmless | hh_helpful | synthetic_gpt | hh_harmless_mini")
    p.add_argument("--out", required=True, help="output JSONL (then: ICDPO_RANK_SET=FILE lm_eval ... "
                   "--tasks hh_harmless_rank)")
    p.add_argument("--base", default=None, help="base model (default: the embedded Gemma-3-270M)")
    p.add_argument("--judge", default="openai", help="openai[:MODEL] (pairwise LLM judge, OPENAI_* env) or "
                   "rm[:NAME] (reward model; rm = auto)")
    p.add_argument("--n-docs", type=int, default=200)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--retriever", default="random", choices=["random", "bm25", "bm25_sbert"])
    p.add_argument("--demo-pool", default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--top-p", type=float, default=0.8)
    p.add_argument("--batch-size", type=int, default=1, help="prompts decoded together")


def main(args: argparse.Namespace) -> int:
    path = build_rank_set(args.task, args.out, base=args.base, judge=args.judge, n_docs=args.n_docs, k=args.k,
                          retriever=args.retriever, seed=args.seed, max_new_tokens=args.max_new_tokens,
                          top_p=args.top_p, demo_pool=args.demo_pool, batch_size=args.batch_size)
    print(f"wrote {path}; run: ICDPO_RANK_SET={path} lm_eval --model icdpo --tasks hh_harmless_rank")
    return 0
