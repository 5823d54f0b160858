"""Pairwise accuracy of reward models on held-out HH-RLHF harmless pairs.

Held-out pairs are the harmless-base test rows in neither the vendored mini eval set nor its demo
pool (``icdpo_eval.data.heldout_pairs``); the proxy RM is fitted on the pool only. Accuracy is the
fraction of pairs with reward(chosen) > reward(rejected), with a 95% Wilson interval.

    python benchmarks/proxy_rm_accuracy.py --data-dir ../shared/data   # shipped proxy + length baseline
    python benchmarks/proxy_rm_accuracy.py --n 200 --rm proxy \\
        --rm OpenAssistant/oasst-rm-2-pythia-6.9b-epoch-1
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from collections.abc import Callable, Sequence

import numpy as np


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    w = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - w, c + w


def pairwise_accuracy(score: Callable[[list[str], list[str]], Sequence[float]],
                      rows: Sequence[dict[str, str]]) -> tuple[int, int]:
    prompts = [r["prompt"] for r in rows]
    sc = np.asarray(score(prompts, [r["chosen"] for r in rows]))
    sr = np.asarray(score(prompts, [r["rejected"] for r in rows]))
    return int((sc > sr).sum()), len(rows)


def length_scorer(pool: Sequence[dict[str, str]]) -> Callable[[list[str], list[str]], list[float]]:
    """Baseline: a 1-feature BT model on log word count, sign fitted on the pool."""
    from icdpo_eval.judges.proxy_rm import fit_bt

    def f(texts: Sequence[str]) -> np.ndarray:
        return np.log1p([len(t.split()) for t in texts])[:, None]

    w = fit_bt(f([r["chosen"] for r in pool]) - f([r["rejected"] for r in pool]), 1.0)
    return lambda prompts, responses: list(f(responses) @ w)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help="evaluate on a seeded sample of n held-out pairs")
    ap.add_argument("--rm", action="append", default=None,
                    help="RewardModelJudge name(s) to evaluate (default: proxy); repeatable")
    ap.add_argument("--no-baseline", action="store_true", help="skip the length baseline")
    ap.add_argument("--data-dir", default=None,
                    help="local data root with hh-rlhf/harmless-base/test.jsonl.gz (sets $ICDPO_DATA_DIR)")
    ap.add_argument("--length-filter", action="store_true",
                    help="keep only held-out pairs within the paper's HH length limits (320/128 tokens)")
    args = ap.parse_args(argv)
    if args.data_dir:
        os.environ["ICDPO_DATA_DIR"] = args.data_dir

    from icdpo_eval.data import heldout_pairs, load_pairs
    from icdpo_eval.judges.reward_model import RewardModelJudge

    pool = load_pairs("hh-rlhf-mini", None, "pool")
    held = heldout_pairs(apply_length_filter=args.length_filter)
    if args.n is not None and args.n < len(held):
        held = random.Random(0).sample(held, args.n)
    table: list[tuple[str, int, int, float]] = []
    if not args.no_baseline:
        t0 = time.perf_counter()
        k, n = pairwise_accuracy(length_scorer(pool), held)
        table.append(("length-bt (log #words)", k, n, time.perf_counter() - t0))
    for name in args.rm or ["proxy"]:
        t0 = time.perf_counter()
        judge = RewardModelJudge(name)
        k, n = pairwise_accuracy(judge.score, held)
        label = judge.resolved_name
        if judge.proxy is not None:
            label += f" (l2={judge.proxy.info.get('l2')}, cv={judge.proxy.info.get('cv_accuracy', 0):.3f})"
        table.append((label, k, n, time.perf_counter() - t0))

    print(f"\npool: {len(pool)} pairs (fit); held-out: {len(held)} pairs\n")
    print("| reward model | n | accuracy | 95% CI (Wilson) | seconds |")
    print("|---|---|---|---|---|")
    for label, k, n, s in table:
        lo, hi = wilson(k, n)
        print(f"| {label} | {n} | {k / n:.3f} | [{lo:.3f}, {hi:.3f}] | {s:.0f} |")


if __name__ == "__main__":
    main()
