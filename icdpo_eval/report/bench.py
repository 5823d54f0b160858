"""ICDPO engine benchmark: the naive reference pipeline vs ours vs one plain ICL sample, one process.

    python benchmarks/engine.py --json --max-new-tokens 64     # = icdpo-eval bench --json ...

Same model, same real HH-RLHF prompts, same demos (K=2, seeded random retrieval from the vendored
pool), same seed, same stop strings, in ONE process:

(a) naive: a re-implementation of the released pipeline's *algorithm* (github F2-Song/ICDPO; not its
    code, which needs its own data files and GPUs): HF ``generate(num_return_sequences=N)`` (the prompt
    re-encoded per sample), then S/Ŝ scoring by a full forward pass of context + ``" " + y`` + EOS for
    every candidate under every context, full-vocabulary logits at every position, one document at a
    time;
(b) ours: the engine (one prefill per context expanded across samples, log π(y|d+,x) reused from the
    sampling pass, one batched pass per other context over its cached prefix, logits only where
    scored), one document at a time; then throughput (``docs_per_min``) on max(n_docs, batch_docs)
    documents, once one at a time and once ``--batch-docs`` decoded together (same documents);
(c) single: one plain ICL sample with stock HF ``generate``.

``same_choice`` / ``max_score_diff`` compare naive and our scoring on the same candidates (ours).
The naive scoring time is measured on those same candidates. ``peak_rss_ratio`` = peak RSS during
ours / during naive. The roofline line compares our decode-step time with the time to stream the
model's weights once at this machine's measured memory bandwidth.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time

import psutil
import torch

from icdpo_eval.data import embedded
from icdpo_eval.data.datasets import load_pairs, load_pairs_file
from icdpo_eval.engine import Engine, stable_seed
from icdpo_eval.method.prompts import TURN_MARKERS, as_continuation, postprocess, zero_shot_context
from icdpo_eval.method.retrieval import make_retriever
from icdpo_eval.method.scorers import Candidate, ContrastiveScorer, negative_context, positive_context


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the max seen since ``reset``."""

    def __init__(self, every: float = 0.02) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self.every = every
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss

    def close(self) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------- naive reference
def naive_generate(eng: Engine, context: str, n: int, max_new: int, top_p: float, seed: int,
                   top_k: int = 50) -> list[str]:
    tok, model = eng.tok, eng.model
    torch.manual_seed(seed)
    enc = tok(context, return_tensors="pt").to(eng.device)
    out = model.generate(**enc, do_sample=True, top_p=top_p, top_k=top_k, temperature=1.0, max_new_tokens=max_new,
                         num_return_sequences=n, stop_strings=list(TURN_MARKERS), tokenizer=tok,
                         pad_token_id=eng.pad_id)
    return [tok.decode(o[enc.input_ids.shape[1]:], skip_special_tokens=True) for o in out]


def naive_logprob(eng: Engine, context: str, continuation: str) -> float:
    """Full forward of context + continuation + EOS (the released ``tokenize_for_fair_scoring``),
    full-vocabulary logits at every position."""
    c, y = eng.encode_context(context), eng.encode_continuation(continuation) + [eng.tok.eos_token_id]
    with torch.inference_mode():
        logits = eng.model(input_ids=torch.tensor([c + y], device=eng.device)).logits[0].float()
        logp = torch.log_softmax(logits, -1)
        return float(logp[len(c) - 1:-1].gather(-1, torch.tensor(y, device=eng.device)[:, None]).sum())


def naive_scores(eng: Engine, kind: str, prompt: str, demos: list[dict], conts: list[str]) -> list[float]:
    pos_ctx = positive_context(prompt, demos)
    ref_ctx = zero_shot_context(prompt) if kind == "s" else negative_context(prompt, demos)
    return [naive_logprob(eng, pos_ctx, y) - naive_logprob(eng, ref_ctx, y) for y in conts]


# ---------------------------------------------------------------------------- helpers
def memory_bandwidth_gbs() -> float:
    """Read bandwidth: sum over a 1 GiB fp32 tensor (best of 3)."""
    x = torch.ones(256 * 1024 * 1024)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


def weight_bytes(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def decode_step_seconds(eng: Engine, context: str, rows: int, steps: int = 16) -> float:
    """Seconds per decode step of ``rows`` rows after a shared prefill (median of ``steps``)."""
    with torch.inference_mode():
        logits, cache, mask, pos = eng._prefill([eng.encode_context(context)])
        if rows > 1:
            cache.batch_repeat_interleave(rows)
            mask, pos = mask.repeat_interleave(rows, 0), pos.repeat_interleave(rows, 0)
        nxt = logits.argmax(-1).repeat(rows)
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], -1)
            logits, cache = eng._forward(nxt[:, None], mask, pos[:, None], cache, keep=1)
            logits = logits[:, -1]
            torch.log_softmax(logits.float(), -1)
            nxt = logits.argmax(-1)
            pos = pos + 1
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def load_prompts(path: str | None, n: int) -> list[dict]:
    rows = load_pairs_file(path, on_error="skip") if path else load_pairs("hh-rlhf-mini", None, "eval")
    if len(rows) < n:
        raise SystemExit(f"--prompts has {len(rows)} usable rows, fewer than --offset + the documents needed ({n})")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=embedded.BASE_ALIAS, help="base model (hub name, path or embedded:*)")
    ap.add_argument("--prompts", help="JSONL of HH-RLHF rows (default: the vendored hh_harmless_mini eval rows)")
    ap.add_argument("--offset", type=int, default=0, help="skip this many rows of --prompts first (measure on rows "
                    "other than the ones tuned on)")
    ap.add_argument("--n-docs", type=int, default=2, help="documents timed one at a time (default 2)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--scorer", choices=["s", "s_hat", "both"], default="both")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-docs", type=int, default=4, help="documents decoded together for docs_per_min")
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--top-p", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=50, help="top-k before top-p (transformers' default, as released)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args(argv)
    scorers = ["s", "s_hat"] if args.scorer == "both" else [args.scorer]

    eng = Engine.load(embedded.resolve(args.model, embedded.BASE_ALIAS), device="cpu" if not torch.cuda.is_available()
                      else None, dtype=args.dtype)
    need = max(args.n_docs, args.batch_docs)
    rows = load_prompts(args.prompts, args.offset + need)[args.offset:args.offset + need]
    pool = load_pairs("hh-rlhf-mini", None, "pool")
    retr = make_retriever("random", pool, seed=args.seed)
    demos = [[pool[i] for i in retr.retrieve(r["prompt"], args.k)] for r in rows]
    prompts = [r["prompt"] for r in rows]
    ctxs = [positive_context(p, d) for p, d in zip(prompts, demos)]
    rss = PeakRSS()
    stops = list(TURN_MARKERS)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {args.model} {eng.model.dtype}; n={args.n} k={args.k} "
          f"max_new_tokens={args.max_new_tokens}; context tokens {[len(eng.encode_context(c)) for c in ctxs]}",
          file=sys.stderr)

    # warm-up (first-call allocations), not timed
    eng.sample([ctxs[0]], 1, max_new_tokens=2, top_p=args.top_p)

    t_naive_sample, t_ours_sample, t_single = 0.0, 0.0, 0.0
    t_naive_score = dict.fromkeys(scorers, 0.0)
    t_ours_score = dict.fromkeys(scorers, 0.0)
    same, total, max_diff = 0, 0, 0.0
    rss_naive, rss_ours = 0, 0
    new_tokens = 0
    for i in range(args.n_docs):
        seed = stable_seed(args.seed, prompts[i])
        # (c) one plain ICL sample, stock HF generate
        t = time.perf_counter()
        naive_generate(eng, ctxs[i], 1, args.max_new_tokens, args.top_p, seed, args.top_k)
        t_single += time.perf_counter() - t
        # (a) naive sampling
        rss.reset()
        t = time.perf_counter()
        naive_generate(eng, ctxs[i], args.n, args.max_new_tokens, args.top_p, seed, args.top_k)
        t_naive_sample += time.perf_counter() - t
        rss_naive = max(rss_naive, rss.peak)
        # (b) ours
        rss.reset()
        t = time.perf_counter()
        (samples,) = eng.sample([ctxs[i]], args.n, max_new_tokens=args.max_new_tokens, top_p=args.top_p,
                                top_k=args.top_k, seeds=[seed], stop=stops)
        t_ours_sample += time.perf_counter() - t
        new_tokens += sum(len(s.token_ids) for s in samples)
        group = [Candidate(prompts[i], as_continuation(postprocess(s.text)), demos[i], s) for s in samples]
        for kind in scorers:
            scorer = ContrastiveScorer(eng, kind)
            t = time.perf_counter()
            (ours,) = scorer.score([group])
            t_ours_score[kind] += time.perf_counter() - t
            rss_ours = max(rss_ours, rss.peak)
            rss.reset()
            t = time.perf_counter()
            naive = naive_scores(eng, kind, prompts[i], demos[i], [c.continuation for c in group])
            t_naive_score[kind] += time.perf_counter() - t
            rss_naive = max(rss_naive, rss.peak)
            finite = [j for j in range(len(ours)) if math.isfinite(ours[j])]
            if finite:
                max_diff = max(max_diff, max(abs(ours[j] - naive[j]) for j in finite))
                same += max(finite, key=lambda j: ours[j]) == max(finite, key=lambda j: naive[j])
                total += 1
            rss.reset()

    # throughput on the same documents: one at a time, then batch_docs decoded together
    bd = args.batch_docs
    kind0 = scorers[0]

    def throughput(per: int) -> float:
        t = time.perf_counter()
        for s in range(0, len(prompts), per):
            sl = slice(s, s + per)
            seeds = [stable_seed(args.seed, p) for p in prompts[sl]]
            batch = eng.sample(ctxs[sl], args.n, max_new_tokens=args.max_new_tokens, top_p=args.top_p,
                               top_k=args.top_k, seeds=seeds, stop=stops, docs_per_batch=per)
            groups = [[Candidate(p, as_continuation(postprocess(x.text)), d, x) for x in ss]
                      for p, d, ss in zip(prompts[sl], demos[sl], batch)]
            ContrastiveScorer(eng, kind0).score(groups)
        return 60.0 * len(prompts) / (time.perf_counter() - t)

    dpm_1 = throughput(1)
    dpm_b = throughput(bd)

    bw = memory_bandwidth_gbs()
    wb = weight_bytes(eng.model)
    step1 = decode_step_seconds(eng, ctxs[0], 1)
    step_n = decode_step_seconds(eng, ctxs[0], args.n)
    stepb = decode_step_seconds(eng, ctxs[0], args.n * bd)
    rss.close()

    nd = args.n_docs
    res: dict = {"n_docs": nd, "max_new_tokens": args.max_new_tokens, "model": args.model,
                 "dtype": str(eng.model.dtype), "batch_docs": bd, "scorers": scorers}
    print(f"\n{'scorer':7s} {'naive s':>9s} {'ours s':>8s} {'single s':>9s} {'speedup':>8s} {'cost/single':>11s}")
    speedups, costs = [], []
    for kind in scorers:
        naive_t = (t_naive_sample + t_naive_score[kind]) / nd
        ours_t = (t_ours_sample + t_ours_score[kind]) / nd
        single_t = t_single / nd
        speedups.append(naive_t / ours_t)
        costs.append(ours_t / single_t)
        res[f"naive_s_per_doc_{kind}"] = naive_t
        res[f"ours_s_per_doc_{kind}"] = ours_t
        res[f"ours_score_s_per_doc_{kind}"] = t_ours_score[kind] / nd
        res[f"naive_score_s_per_doc_{kind}"] = t_naive_score[kind] / nd
        print(f"{kind:7s} {naive_t:9.2f} {ours_t:8.2f} {single_t:9.2f} {naive_t / ours_t:7.2f}x "
              f"{ours_t / single_t:11.2f}")
    res.update(
        single_s_per_doc=t_single / nd, naive_sample_s_per_doc=t_naive_sample / nd,
        ours_sample_s_per_doc=t_ours_sample / nd, ours_new_tokens_per_doc=new_tokens / nd,
        speedup_vs_naive=min(speedups), cost_vs_single=max(costs),
        same_choice=same / total if total else float("nan"), max_score_diff=max_diff,
        peak_rss_ratio=rss_ours / rss_naive if rss_naive else float("nan"),
        docs_per_min=dpm_b, docs_per_min_batch1=dpm_1, docs_per_min_ratio=dpm_b / dpm_1,
        throughput_docs=len(prompts),
        docs_per_min_naive=60.0 * nd / (t_naive_sample + t_naive_score[kind0]),
        memory_bandwidth_gbs=bw, weight_bytes=wb, roofline_step_s=wb / (bw * 1e9),
        decode_step_s_1row=step1, decode_step_s_nrows=step_n, decode_step_s_batch=stepb,
    )
    print(f"\nsame_choice {res['same_choice']:.3f}  max_score_diff {max_diff:.2e}  "
          f"peak_rss_ratio {res['peak_rss_ratio']:.2f}")
    print(f"docs/min over the same {len(prompts)} docs: ours batch-docs {bd}: {dpm_b:.2f}, ours batch 1: "
          f"{dpm_1:.2f} ({dpm_b / dpm_1:.2f}x); naive (first {nd} docs): {res['docs_per_min_naive']:.2f}")
    print(f"roofline: weights {wb / 1e9:.2f} GB at {bw:.1f} GB/s = {res['roofline_step_s'] * 1e3:.0f} ms per step; "
          f"measured decode step {step1 * 1e3:.0f} ms (1 row), {step_n * 1e3:.0f} ms ({args.n} rows), "
          f"{stepb * 1e3:.0f} ms ({args.n * bd} rows) = {step1 / res['roofline_step_s']:.2f}x the roofline (1 row)")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
