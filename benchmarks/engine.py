"""ICDPO engine benchmark: the naive reference pipeline vs ours vs one plain ICL sample, one process.

    python benchmarks/engine.py --json --max-new-tokens 64     # = icdpo-eval bench --json ... (a source checkout)

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
from dataclasses import dataclass, field

import psutil
import torch

from icdpo_eval.config import names
from icdpo_eval.data.datasets import load_pairs, load_pairs_file
from icdpo_eval.engine import Engine, SamplingParams, stable_seed
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
                   top_k: int = 50, full_length: bool = False) -> tuple[list[str], int]:
    """HF ``generate``: the texts and the number of new tokens per sample. ``full_length``: exactly ``max_new``
    tokens (EOS masked, no stop strings), the equal-work reference."""
    tok, model = eng.tok, eng.model
    torch.manual_seed(seed)
    enc = tok(context, return_tensors="pt").to(eng.device)
    extra: dict = ({"min_new_tokens": max_new} if full_length
                   else {"stop_strings": list(TURN_MARKERS), "tokenizer": tok})
    out = model.generate(**enc, do_sample=True, top_p=top_p, top_k=top_k, temperature=1.0, max_new_tokens=max_new,
                         num_return_sequences=n, pad_token_id=eng.pad_id, **extra)
    new = out[:, enc.input_ids.shape[1]:]
    return [tok.decode(o, skip_special_tokens=True) for o in new], int(new.shape[1])


def hf_decode_step_seconds(eng: Engine, context: str, steps: int = 32, repeats: int = 3) -> float:
    """Seconds per decode step of stock HF ``generate`` on one row: (time of ``steps`` + 1 new tokens - time of
    1) / ``steps``, both forced to full length, best of ``repeats``."""
    def timed(n_new: int) -> float:
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            naive_generate(eng, context, 1, n_new, 0.8, 0, full_length=True)
            best = min(best, time.perf_counter() - t)
        return best

    return (timed(steps + 1) - timed(1)) / steps


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


@dataclass
class Step:
    """Median seconds of one decode step of ``rows`` rows, and of its two parts: the decoder trunk and the LM
    head (the vocabulary projection), timed separately on the same step (0 when the model has no split head)."""

    rows: int
    total: float
    trunk: float
    head: float


def decode_step_seconds(eng: Engine, context: str, rows: int, steps: int = 16) -> Step:
    """One decode step of ``rows`` rows after a shared prefill, as the engine runs it (median of ``steps``)."""
    from icdpo_eval.engine.loading import cache_of

    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    with torch.inference_mode():
        logits, cache, mask, pos = eng._prefill([eng.encode_context(context)])
        if rows > 1:
            cache.batch_repeat_interleave(rows)
            mask, pos = mask.repeat_interleave(rows, 0), pos.repeat_interleave(rows, 0)
        nxt = logits.argmax(-1).repeat(rows)
        total, trunk, head = [], [], []
        for _ in range(steps + 1):  # the first step (the head's layout probe at a new row count) is not kept
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], -1)
            t = time.perf_counter()
            if eng.kernels.active:
                out = eng.trunk_step(nxt[:, None], mask, pos[:, None], cache)
                t1 = time.perf_counter()
                logits = eng.kernels.head(out.last_hidden_state[:, -1:, :])
                t2 = time.perf_counter()
                cache = cache_of(out)
                trunk.append(t1 - t)
                head.append(t2 - t1)
            else:
                logits, cache = eng._forward(nxt[:, None], mask, pos[:, None], cache, keep=1)
            logits = logits[:, -1]
            torch.log_softmax(logits.float(), -1)
            nxt = logits.argmax(-1)
            pos = pos + 1
            total.append(time.perf_counter() - t)
    total, trunk, head = total[1:], trunk[1:], head[1:]
    return Step(rows, med(total), med(trunk) if trunk else 0.0, med(head) if head else 0.0)


def load_prompts(path: str | None, n: int) -> list[dict]:
    rows = load_pairs_file(path, on_error="skip") if path else load_pairs("hh-rlhf-mini", None, "eval")
    if len(rows) < n:
        raise SystemExit(f"--prompts has {len(rows)} usable rows, fewer than --offset + the documents needed ({n})")
    return rows


# ---------------------------------------------------------------------------- the benchmark, step by step
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=names.BASE, help="base model (hub name, folder or embedded:base)")
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
    ap.add_argument("--length", choices=["full", "natural"], default="full",
                    help="full (default): every pipeline generates exactly --max-new-tokens tokens (EOS masked, no "
                    "stop strings), so costs compare equal work; natural: stop at EOS / the turn markers as a run "
                    "does (per-token costs are reported beside per-document ones)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    return ap.parse_args(argv)


@dataclass
class Workload:
    """What all three pipelines run on: the model, the documents, their demos and ICL (positive) contexts."""

    args: argparse.Namespace
    eng: Engine
    scorers: list[str]
    prompts: list[str]
    demos: list[list[dict]]
    ctxs: list[str]
    stops: list[str] = field(default_factory=lambda: list(TURN_MARKERS))

    def seed(self, i: int) -> int:
        """Document ``i``'s sampling seed (the same for all three pipelines)."""
        return stable_seed(self.args.seed, self.prompts[i])

    @property
    def full(self) -> bool:
        return self.args.length == "full"

    def params(self) -> SamplingParams:
        """Our sampling settings: the released ones, forced to full length under ``--length full``."""
        a = self.args
        return SamplingParams(max_new_tokens=a.max_new_tokens, top_p=a.top_p, top_k=a.top_k,
                              stop=() if self.full else tuple(self.stops),
                              min_new_tokens=a.max_new_tokens if self.full else 0)

    def candidates(self, i: int, samples: list) -> list[Candidate]:
        return [Candidate(self.prompts[i], as_continuation(postprocess(s.text)), self.demos[i], s) for s in samples]


def load(args: argparse.Namespace) -> Workload:
    """The model, max(n_docs, batch_docs) documents from ``--offset`` on, K seeded-random demos for each."""
    scorers = ["s", "s_hat"] if args.scorer == "both" else [args.scorer]
    eng = Engine.load(names.resolve(args.model), device="cpu" if not torch.cuda.is_available()
                      else None, dtype=args.dtype)
    need = max(args.n_docs, args.batch_docs)
    rows = load_prompts(args.prompts, args.offset + need)[args.offset:args.offset + need]
    pool = load_pairs("hh-rlhf-mini", None, "pool")
    retr = make_retriever("random", pool, seed=args.seed)
    demos = [[pool[i] for i in retr.retrieve(r["prompt"], args.k)] for r in rows]
    prompts = [r["prompt"] for r in rows]
    ctxs = [positive_context(p, d) for p, d in zip(prompts, demos)]
    return Workload(args, eng, scorers, prompts, demos, ctxs)


def print_setup(w: Workload) -> None:
    args = w.args
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {args.model} {w.eng.model.dtype}; n={args.n} k={args.k} "
          f"max_new_tokens={args.max_new_tokens} ({args.length} length); "
          f"context tokens {[len(w.eng.encode_context(c)) for c in w.ctxs]}",
          file=sys.stderr)


@dataclass
class Tally:
    """Seconds, tokens, agreement and peak RSS summed over the documents timed one at a time."""

    scorers: list[str]
    single: float = 0.0  # (c) one plain ICL sample
    single_tokens: int = 0  # its new tokens
    naive_sample: float = 0.0  # (a) sampling
    ours_sample: float = 0.0  # (b) sampling
    naive_score: dict[str, float] = field(default_factory=dict)  # per scorer, (a) on (b)'s candidates
    ours_score: dict[str, float] = field(default_factory=dict)  # per scorer
    new_tokens: int = 0  # sampled by (b)
    same: int = 0  # documents (x scorers) where naive and ours pick the same candidate
    total: int = 0  # ... out of these
    max_diff: float = 0.0  # largest |ours - naive| score of a finite candidate
    rss_naive: int = 0
    rss_ours: int = 0

    def __post_init__(self) -> None:
        self.naive_score = dict.fromkeys(self.scorers, 0.0)
        self.ours_score = dict.fromkeys(self.scorers, 0.0)

    def compare(self, ours: list[float], naive: list[float]) -> None:
        finite = [j for j in range(len(ours)) if math.isfinite(ours[j])]
        if finite:
            self.max_diff = max(self.max_diff, max(abs(ours[j] - naive[j]) for j in finite))
            self.same += max(finite, key=lambda j: ours[j]) == max(finite, key=lambda j: naive[j])
            self.total += 1


def run_single(w: Workload, i: int, seed: int) -> int:
    """(c) one plain ICL sample with stock HF ``generate``; its number of new tokens."""
    args = w.args
    return naive_generate(w.eng, w.ctxs[i], 1, args.max_new_tokens, args.top_p, seed, args.top_k, w.full)[1]


def run_naive_sampling(w: Workload, i: int, seed: int) -> None:
    """(a) N samples with HF ``generate(num_return_sequences=N)`` (only its time is kept)."""
    args = w.args
    naive_generate(w.eng, w.ctxs[i], args.n, args.max_new_tokens, args.top_p, seed, args.top_k, w.full)


def run_ours_sampling(w: Workload, i: int, seed: int) -> list:
    """(b) N samples from the engine (one prefill, expanded across the samples)."""
    (samples,) = w.eng.sample([w.ctxs[i]], w.args.n, seeds=[seed], params=w.params())
    return samples


def measure_document(w: Workload, i: int, rss: PeakRSS, tally: Tally) -> None:
    """Document ``i``: time (c), (a)'s and (b)'s sampling, then each scorer, ours and naive, on (b)'s candidates."""
    seed = w.seed(i)
    t = time.perf_counter()
    tally.single_tokens += run_single(w, i, seed)
    tally.single += time.perf_counter() - t

    rss.reset()
    t = time.perf_counter()
    run_naive_sampling(w, i, seed)
    tally.naive_sample += time.perf_counter() - t
    tally.rss_naive = max(tally.rss_naive, rss.peak)

    rss.reset()
    t = time.perf_counter()
    samples = run_ours_sampling(w, i, seed)
    tally.ours_sample += time.perf_counter() - t
    tally.new_tokens += sum(len(s.token_ids) for s in samples)
    group = w.candidates(i, samples)

    for kind in w.scorers:
        scorer = ContrastiveScorer(w.eng, kind)
        t = time.perf_counter()
        (ours,) = scorer.score([group])
        tally.ours_score[kind] += time.perf_counter() - t
        tally.rss_ours = max(tally.rss_ours, rss.peak)
        rss.reset()
        t = time.perf_counter()
        naive = naive_scores(w.eng, kind, w.prompts[i], w.demos[i], [c.continuation for c in group])
        tally.naive_score[kind] += time.perf_counter() - t
        tally.rss_naive = max(tally.rss_naive, rss.peak)
        tally.compare(ours, naive)
        rss.reset()


def throughput(w: Workload, per: int) -> float:
    """Documents per minute of ours (sample + the first scorer) over all loaded documents, ``per`` at a time."""
    args, kind0 = w.args, w.scorers[0]
    t = time.perf_counter()
    for s in range(0, len(w.prompts), per):
        sl = slice(s, s + per)
        seeds = [stable_seed(args.seed, p) for p in w.prompts[sl]]
        batch = w.eng.sample(w.ctxs[sl], args.n, seeds=seeds, params=w.params(), docs_per_batch=per)
        groups = [[Candidate(p, as_continuation(postprocess(x.text)), d, x) for x in ss]
                  for p, d, ss in zip(w.prompts[sl], w.demos[sl], batch)]
        ContrastiveScorer(w.eng, kind0).score(groups)
    return 60.0 * len(w.prompts) / (time.perf_counter() - t)


@dataclass
class Roofline:
    bandwidth_gbs: float  # measured memory read bandwidth
    weight_bytes: int
    step_1row: Step  # ours, one row
    step_nrows: Step  # ours, N rows (one document's samples)
    step_batch: Step  # ours, N x batch_docs rows
    hf_step_1row: float  # stock HF generate, one row

    @property
    def step_s(self) -> float:
        """Seconds to stream the weights once at ``bandwidth_gbs``."""
        return self.weight_bytes / (self.bandwidth_gbs * 1e9)


def measure_roofline(w: Workload) -> Roofline:
    ctx, n = w.ctxs[0], w.args.n
    return Roofline(memory_bandwidth_gbs(), weight_bytes(w.eng.model), decode_step_seconds(w.eng, ctx, 1),
                    decode_step_seconds(w.eng, ctx, n), decode_step_seconds(w.eng, ctx, n * w.args.batch_docs),
                    hf_decode_step_seconds(w.eng, ctx))


def report(w: Workload, tally: Tally, dpm_1: float, dpm_b: float, roof: Roofline) -> dict:
    """Print the per-scorer table and the summary lines; the results as the ``--json`` dict."""
    args, scorers, nd, bd = w.args, w.scorers, w.args.n_docs, w.args.batch_docs
    res: dict = {"n_docs": nd, "max_new_tokens": args.max_new_tokens, "model": args.model,
                 "dtype": str(w.eng.model.dtype), "batch_docs": bd, "scorers": scorers}
    print(f"\n{'scorer':7s} {'naive s':>9s} {'ours s':>8s} {'single s':>9s} {'speedup':>8s} {'cost/single':>11s}")
    speedups, costs = [], []
    for kind in scorers:
        naive_t = (tally.naive_sample + tally.naive_score[kind]) / nd
        ours_t = (tally.ours_sample + tally.ours_score[kind]) / nd
        single_t = tally.single / nd
        speedups.append(naive_t / ours_t)
        costs.append(ours_t / single_t)
        res[f"naive_s_per_doc_{kind}"] = naive_t
        res[f"ours_s_per_doc_{kind}"] = ours_t
        res[f"ours_score_s_per_doc_{kind}"] = tally.ours_score[kind] / nd
        res[f"naive_score_s_per_doc_{kind}"] = tally.naive_score[kind] / nd
        print(f"{kind:7s} {naive_t:9.2f} {ours_t:8.2f} {single_t:9.2f} {naive_t / ours_t:7.2f}x "
              f"{ours_t / single_t:11.2f}")
    tokens_per_row = tally.new_tokens / (args.n * nd)  # ours: decode steps per document
    single_per_token = tally.single / max(tally.single_tokens, 1)
    for kind in scorers:
        per_token = res[f"ours_s_per_doc_{kind}"] * nd / max(tally.new_tokens / args.n, 1)
        res[f"ours_s_per_token_{kind}"] = per_token
        res[f"cost_vs_single_per_token_{kind}"] = per_token / single_per_token
    r1, rn, rb = roof.step_1row, roof.step_nrows, roof.step_batch
    res.update(
        length=args.length, single_new_tokens_per_doc=tally.single_tokens / nd, ours_tokens_per_row=tokens_per_row,
        single_s_per_token=single_per_token,
        cost_vs_single_per_token=max(res[f"cost_vs_single_per_token_{k}"] for k in scorers),
        hf_decode_step_s_1row=roof.hf_step_1row, decode_rows=rn.rows,
        step_ratio_nrows_vs_1row=rn.total / r1.total, step_ratio_nrows_vs_hf_1row=rn.total / roof.hf_step_1row,
        head_share_1row=r1.head / r1.total, trunk_share_1row=r1.trunk / r1.total,
        head_share_nrows=rn.head / rn.total, trunk_share_nrows=rn.trunk / rn.total,
        head_layouts={str(k): v for k, v in sorted(w.eng.kernels.head.choice.items())} if w.eng.kernels.active else {},
        single_s_per_doc=tally.single / nd, naive_sample_s_per_doc=tally.naive_sample / nd,
        ours_sample_s_per_doc=tally.ours_sample / nd, ours_new_tokens_per_doc=tally.new_tokens / nd,
        speedup_vs_naive=min(speedups), cost_vs_single=max(costs),
        same_choice=tally.same / tally.total if tally.total else float("nan"), max_score_diff=tally.max_diff,
        peak_rss_ratio=tally.rss_ours / tally.rss_naive if tally.rss_naive else float("nan"),
        docs_per_min=dpm_b, docs_per_min_batch1=dpm_1, docs_per_min_ratio=dpm_b / dpm_1,
        throughput_docs=len(w.prompts),
        docs_per_min_naive=60.0 * nd / (tally.naive_sample + tally.naive_score[scorers[0]]),
        memory_bandwidth_gbs=roof.bandwidth_gbs, weight_bytes=roof.weight_bytes, roofline_step_s=roof.step_s,
        decode_step_s_1row=r1.total, decode_step_s_nrows=rn.total, decode_step_s_batch=rb.total,
    )
    print(f"\nsame_choice {res['same_choice']:.3f}  max_score_diff {tally.max_diff:.2e}  "
          f"peak_rss_ratio {res['peak_rss_ratio']:.2f}")
    print(f"docs/min over the same {len(w.prompts)} docs: ours batch-docs {bd}: {dpm_b:.2f}, ours batch 1: "
          f"{dpm_1:.2f} ({dpm_b / dpm_1:.2f}x); naive (first {nd} docs): {res['docs_per_min_naive']:.2f}")
    print(f"roofline: weights {roof.weight_bytes / 1e9:.2f} GB at {roof.bandwidth_gbs:.1f} GB/s = "
          f"{roof.step_s * 1e3:.0f} ms per step; measured decode step {r1.total * 1e3:.0f} ms (1 row), "
          f"{rn.total * 1e3:.0f} ms ({rn.rows} rows), {rb.total * 1e3:.0f} ms ({rb.rows} rows) = "
          f"{r1.total / roof.step_s:.2f}x the roofline (1 row); stock HF generate {roof.hf_step_1row * 1e3:.0f} ms "
          f"(1 row)")
    print(f"decode step {rn.rows} rows / 1 row: {res['step_ratio_nrows_vs_1row']:.2f}x ours, "
          f"{res['step_ratio_nrows_vs_hf_1row']:.2f}x HF's 1-row step; LM head share {res['head_share_1row']:.0%} "
          f"(1 row) / {res['head_share_nrows']:.0%} ({rn.rows} rows), trunk {res['trunk_share_1row']:.0%} / "
          f"{res['trunk_share_nrows']:.0%}; head layouts {res['head_layouts']}")
    print(f"per token: one ICL sample {single_per_token * 1e3:.0f} ms, ours "
          + ", ".join(f"{k} {res[f'ours_s_per_token_{k}'] * 1e3:.0f} ms ({res[f'cost_vs_single_per_token_{k}']:.2f}x)"
                      for k in scorers)
          + f" (one ICL sample generated {res['single_new_tokens_per_doc']:.0f} tokens per document, ours "
          f"{tokens_per_row:.0f} per candidate)")
    return res


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    w = load(args)
    rss = PeakRSS()
    print_setup(w)
    w.eng.sample([w.ctxs[0]], 1, max_new_tokens=2, top_p=args.top_p)  # warm-up (first-call allocations), not timed

    tally = Tally(w.scorers)
    for i in range(args.n_docs):
        measure_document(w, i, rss, tally)
    # throughput on the same documents: one at a time, then batch_docs decoded together
    dpm_1 = throughput(w, 1)
    dpm_b = throughput(w, args.batch_docs)
    roof = measure_roofline(w)
    rss.close()

    res = report(w, tally, dpm_1, dpm_b, roof)
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
