"""Pairwise accuracy of reward models on held-out HH-RLHF harmless pairs.

Held-out pairs are the harmless-base test rows in neither the vendored mini eval set nor its demo
pool (``icdpo_eval.data.heldout_pairs``, no length filter: 1203 pairs); the proxy RM is fitted on the
pool only. Accuracy is the fraction of pairs with reward(chosen) > reward(rejected) (a tie counts as
wrong), with a 95% Wilson interval.

Pairs: by default all held-out pairs, read from the HH-RLHF harmless-base test file (``--data-dir``
or ``$ICDPO_DATA_DIR``, else the hub). ``--pairs sample`` uses the vendored seeded sample of 200 of
them (``icdpo_eval/data/hh_harmless_heldout``; no data needed), which is the sample ``--n 200`` draws.

Scorers: the reward models named by ``--rm`` (default the shipped ``proxy``), the length-only baseline
(a 1-feature Bradley-Terry model on log word count, fitted on the pool) and, with ``--lm-judge``, an LM
judge: the teacher LM (default the embedded SmolLM2-135M-Instruct, the RM-BoN / RM-Aug teacher,
``icdpo_eval.method.teacher``) scoring a response by log p_teacher(response | chat context), summed (RM-BoN's
default) and per token. The LM judge runs on a seeded sample of ``--lm-judge-n`` pairs (default 200: the
vendored sample) to stay cheap on a CPU; the other scorers are also reported on that same sample, so the
rows of one sample are a paired comparison.

The output is a markdown table, ready to paste. The README's table is

    python benchmarks/proxy_rm_accuracy.py --data-dir ../shared/data --lm-judge

and ``icdpo_eval.judges.proxy_rm.PROXY_HELDOUT_ACCURACY`` records its proxy rows (checked by
``tests/test_reward_model.py``; the script says whether its measurement still matches). Other uses:

    python benchmarks/proxy_rm_accuracy.py --pairs sample            # no data dir needed
    python benchmarks/proxy_rm_accuracy.py --n 200 --rm proxy \\
        --rm OpenAssistant/oasst-rm-2-pythia-6.9b-epoch-1
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from icdpo_eval.stats import wilson

Score = Callable[[list[str], list[str]], Sequence[float]]
ALL = "all held-out"
VENDORED = "vendored seeded sample"  # random.Random(0).sample(all held-out, 200), = icdpo_eval/data/hh_harmless_heldout
SAMPLE = "seeded sample"  # another seeded sample


class Row(NamedTuple):
    scorer: str
    pairs: str
    correct: np.ndarray  # bool per pair: reward(chosen) > reward(rejected)
    seconds: float | None  # None: same scores as the row above it

    @property
    def k(self) -> int:
        return int(self.correct.sum())

    @property
    def n(self) -> int:
        return len(self.correct)


def pairwise_correct(score: Score, rows: Sequence[dict[str, str]]) -> np.ndarray:
    """Per pair: does ``score`` rank chosen strictly above rejected?"""
    prompts = [r["prompt"] for r in rows]
    sc = np.asarray(score(prompts, [r["chosen"] for r in rows]), dtype=float)
    sr = np.asarray(score(prompts, [r["rejected"] for r in rows]), dtype=float)
    return sc > sr


def pairwise_accuracy(score: Score, rows: Sequence[dict[str, str]]) -> tuple[int, int]:
    """(pairs ranked correctly, pairs)."""
    c = pairwise_correct(score, rows)
    return int(c.sum()), len(c)


def length_scorer(pool: Sequence[dict[str, str]]) -> Score:
    """Baseline: a 1-feature BT model on log word count, sign fitted on the pool."""
    from icdpo_eval.judges.proxy_rm import fit_bt

    def f(texts: Sequence[str]) -> np.ndarray:
        return np.log1p([len(t.split()) for t in texts])[:, None]

    w = fit_bt(f([r["chosen"] for r in pool]) - f([r["rejected"] for r in pool]), 1.0)
    return lambda prompts, responses: list(f(responses) @ w)


def lm_judge_correct(rows: Sequence[dict[str, str]], teacher_name: str | None = None, *,
                     device: str | None = None, batch: int = 8) -> tuple[str, np.ndarray, np.ndarray]:
    """(teacher name, correct by summed log-prob, correct by per-token log-prob): one scoring pass of
    log p_teacher(response | context) over chosen and rejected (each context encoded once)."""
    from icdpo_eval.method.teacher import load_teacher, require_scorer

    require_scorer(teacher_name)  # an API teacher gives no log-probs
    teacher = load_teacher(teacher_name, device=device)
    sums: list[list[float]] = []
    for s in range(0, len(rows), batch):
        chunk = rows[s:s + batch]
        sums += teacher.score([r["prompt"] for r in chunk], [[r["chosen"], r["rejected"]] for r in chunk])
    lens = [[len(teacher.engine.encode_continuation(teacher.as_continuation(r[key].strip()))) or 1
             for key in ("chosen", "rejected")] for r in rows]
    s = np.asarray(sums, dtype=float)
    per_tok = s / np.asarray(lens, dtype=float)
    return teacher.name, s[:, 0] > s[:, 1], per_tok[:, 0] > per_tok[:, 1]


def markdown_table(rows: Sequence[Row]) -> str:
    out = ["| scorer | pairs | n | accuracy | 95% CI (Wilson) | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = wilson(r.k, r.n)
        secs = "(same scores)" if r.seconds is None else f"{r.seconds:.0f}"
        out.append(f"| {r.scorer} | {r.pairs} | {r.n} | {r.k / r.n:.3f} | [{lo:.3f}, {hi:.3f}] | {secs} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", choices=("all", "sample"), default="all",
                    help="all held-out pairs (needs the HH-RLHF test file) or the vendored 200-pair sample")
    ap.add_argument("--n", type=int, default=None, help="evaluate on a seeded sample of n of those pairs")
    ap.add_argument("--rm", action="append", default=None,
                    help="RewardModelJudge name(s) to evaluate (default: proxy); repeatable")
    ap.add_argument("--no-baseline", action="store_true", help="skip the length baseline")
    ap.add_argument("--lm-judge", nargs="?", const="", default=None, metavar="TEACHER",
                    help="also the LM-judge baseline: this teacher (default the embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--lm-judge-n", type=int, default=200,
                    help="the LM judge runs on a seeded sample of this many pairs (default 200 = the vendored sample)")
    ap.add_argument("--device", default=None, help="device of the reward models and the LM judge")
    ap.add_argument("--data-dir", default=None,
                    help="local data root with hh-rlhf/harmless-base/test.jsonl.gz (sets $ICDPO_DATA_DIR)")
    ap.add_argument("--length-filter", action="store_true",
                    help="keep only held-out pairs within the paper's HH length limits (320/128 tokens)")
    args = ap.parse_args(argv)
    if args.data_dir:
        os.environ["ICDPO_DATA_DIR"] = args.data_dir

    from icdpo_eval.data.datasets import LENGTH_LIMITS, heldout_pairs, length_filter, load_pairs, load_pairs_file
    from icdpo_eval.judges.proxy_rm import HELDOUT_SAMPLE_FILE, PROXY_HELDOUT_ACCURACY
    from icdpo_eval.judges.reward_model import RewardModelJudge

    pool = load_pairs("hh-rlhf-mini", None, "pool")
    if args.pairs == "sample":
        held, pairs = load_pairs_file(HELDOUT_SAMPLE_FILE), VENDORED
    else:
        held, pairs = heldout_pairs(apply_length_filter=args.length_filter), ALL
    full = pairs == ALL and not args.length_filter  # seeded samples of 200 of it are the vendored sample
    if args.n is not None and args.n < len(held):
        # random.sample draws the same indices from any population of the same length
        held = random.Random(0).sample(held, args.n)
        pairs = VENDORED if full and args.n == PROXY_HELDOUT_ACCURACY.sample.n else SAMPLE
    if args.pairs == "sample" and args.length_filter:
        held = length_filter(held, *LENGTH_LIMITS["hh-rlhf"], source=str(HELDOUT_SAMPLE_FILE))
    sub, sub_pairs = None, pairs  # the LM judge's sample
    if args.lm_judge is not None and args.lm_judge_n < len(held):
        sub = random.Random(0).sample(range(len(held)), args.lm_judge_n)
        vendored = full and pairs == ALL and args.lm_judge_n == PROXY_HELDOUT_ACCURACY.sample.n
        sub_pairs = VENDORED if vendored else SAMPLE
    if args.length_filter:  # not the recorded pair sets
        pairs, sub_pairs = pairs + " (length-filtered)", sub_pairs + " (length-filtered)"

    table: list[Row] = []
    if not args.no_baseline:
        t0 = time.perf_counter()
        table.append(Row("length-only (BT on log #words)", pairs, pairwise_correct(length_scorer(pool), held),
                         time.perf_counter() - t0))
    for name in args.rm or ["proxy"]:
        t0 = time.perf_counter()
        judge = RewardModelJudge(name, device=args.device)
        correct = pairwise_correct(judge.score, held)
        label = f"`{judge.resolved_name}`"
        if judge.proxy is not None:
            label = (f"proxy RM {label} (l2={judge.proxy.info.get('l2')}, "
                     f"cv={judge.proxy.info.get('cv_accuracy', 0):.3f})")
        table.append(Row(label, pairs, correct, time.perf_counter() - t0))
    if args.lm_judge is not None:
        rows = held
        if sub is not None:  # the other scorers on the LM judge's sample: a paired comparison
            rows = [held[i] for i in sub]
            table += [Row(r.scorer, sub_pairs, r.correct[sub], None) for r in list(table)]
        t0 = time.perf_counter()
        name, c_sum, c_tok = lm_judge_correct(rows, args.lm_judge or None, device=args.device)
        short = name.split(":")[-1].split("/")[-1]
        table.append(Row(f"LM judge `{short}`: log p(response), sum", sub_pairs, c_sum, time.perf_counter() - t0))
        table.append(Row(f"LM judge `{short}`: log p(response) per token", sub_pairs, c_tok, None))

    print(f"\npool: {len(pool)} pairs (proxy and length fits); held-out: {len(held)} pairs ({pairs})"
          + (f"; LM-judge sample: {len(sub)} pairs ({sub_pairs})" if sub is not None else "") + "\n")
    print(markdown_table(table))
    recorded = {ALL: PROXY_HELDOUT_ACCURACY.all, VENDORED: PROXY_HELDOUT_ACCURACY.sample}
    for r in table:
        ref = recorded.get(r.pairs)
        if r.scorer.startswith("proxy RM `proxy:") and ref is not None and ref.n == r.n:
            verdict = "matches" if (r.k, r.n) == (ref.k, ref.n) else "DIFFERS: update it and the README"
            print(f"\nproxy on {r.pairs}: {r.k}/{r.n}; icdpo_eval.judges.proxy_rm.PROXY_HELDOUT_ACCURACY records "
                  f"{ref.k}/{ref.n}: {verdict}")
    return table


if __name__ == "__main__":
    main()
