"""Candidates stored by what determines them, so nothing is sampled twice.

A document's N candidates depend only on: the base model (weights, dtype, device, adapter), the exact context they
are sampled under (the prompt, the demos and their order, the template and its instruction lines), N, the row seed,
the sampling settings (temperature, top-k, top-p, max / min new tokens, stop strings) and the code that samples (the
engine's source, torch's and transformers' versions). Not on the scorer that picks among them: ICDPO with S, with Ŝ
and the ICL scorer on the same retriever draw the same candidates, as do RM-BoN and the length-only rows, and a
user's second ``lm_eval`` run with another scorer. Nor, beyond its first N, on N: candidate j is drawn from its own
generator (``row_generator(seed, j)``), so the first N of a draw of 16 are what a draw of N gives, and a sweep over
N (``sweep: {n: [...]}`` in a leaderboard spec) draws each document once, at its largest N. A reused draw is counted
in the process's meter at what drawing it cost (``reused_*``, :meth:`Engine.draw_cost`).
:class:`CandidateStore` keeps every sampled :class:`Sample`
(tokens, their log-probs, the EOS log-probs, the stop reason) under that key in one sqlite file
(``<cache dir>/candidates.sqlite``), so a reused candidate's log π(y | d+, x) is the sampling pass's own and S / Ŝ
score it exactly as if it had just been drawn. ``reuse_candidates=false`` (a model_arg) turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icdpo_eval.config import settings
from icdpo_eval.engine import Engine, Sample, SamplingParams
from icdpo_eval.runtime import SqliteStore


@functools.cache
def sampler_version() -> str:
    """The code and libraries a draw depends on: the engine's source (the decode loop, the sampling policy, the cache
    shims it prefills with), torch and transformers."""
    import torch
    import transformers

    import icdpo_eval.engine.engine as eng
    import icdpo_eval.engine.loading as ld
    import icdpo_eval.engine.sampling as smp

    h = hashlib.sha256()
    for mod in (eng, smp, ld):
        h.update(Path(mod.__file__).read_bytes())
    h.update(f"{torch.__version__}|{transformers.__version__}".encode())
    return h.hexdigest()[:16]


class CandidateStore(SqliteStore):
    """Sampled candidates by (model, context, n, seed, sampling settings, code): :meth:`sample` draws only what the
    store lacks, counting contexts (documents) served from the store / drawn in the caller's ``stats``."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__(Path(path) if path is not None else settings.cache_dir() / "candidates.sqlite",
                         "CREATE TABLE IF NOT EXISTS candidates (key TEXT PRIMARY KEY, samples TEXT NOT NULL)")

    @staticmethod
    def key(model_key: Any, context: str, seed: int, params: SamplingParams) -> str:
        blob = json.dumps(["any n", str(model_key), context, seed, params.max_new_tokens, params.top_p, params.top_k,
                           params.temperature, params.do_sample, list(params.stop), params.min_new_tokens,
                           sampler_version()],
                          ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> list[Sample] | None:
        rows = self.query("SELECT samples FROM candidates WHERE key = ?", (key,))
        if not rows:
            return None
        return [Sample(s["token_ids"], s["token_logprobs"], s["text"], s["stop_reason"], s["eos_logprobs"])
                for s in json.loads(rows[0][0])]

    def put(self, key: str, samples: Sequence[Sample]) -> None:
        blob = json.dumps([{"token_ids": s.token_ids, "token_logprobs": s.token_logprobs, "text": s.text,
                            "stop_reason": s.stop_reason, "eos_logprobs": s.eos_logprobs} for s in samples],
                          ensure_ascii=False)
        self.query("INSERT OR REPLACE INTO candidates VALUES (?, ?)", (key, blob))

    def sample(self, engine: Engine, contexts: Sequence[str], n: int, *, params: SamplingParams,
               seeds: Sequence[int], names: Sequence[str] | None = None,
               stats: dict[str, int] | None = None) -> list[list[Sample]]:
        """``engine.sample(contexts, n, params=params, seeds=seeds)``, drawing only the contexts whose stored draw is
        missing or has fewer than ``n`` candidates (the first ``n`` of a larger one are served)."""
        model = (engine.weights_key, engine.kernels.key())  # the kernels' choices can move the last bits
        keys = [self.key(model, c, s, params) for c, s in zip(contexts, seeds, strict=True)]
        out: list[list[Sample] | None] = []
        for c, k in zip(contexts, keys):
            got = self.get(k)
            if got is not None and len(got) >= n:
                out.append(got[:n])
                cost = engine.draw_cost(len(engine.encode_context(c)), got[:n])
                engine.count(**{f"reused_{f}": v for f, v in cost.items()})
            else:
                out.append(None)
        todo = [i for i, got in enumerate(out) if got is None]
        if stats is not None:
            stats["candidates_reused"] = stats.get("candidates_reused", 0) + len(contexts) - len(todo)
            stats["candidates_sampled"] = stats.get("candidates_sampled", 0) + len(todo)
        if todo:
            drawn = engine.sample([contexts[i] for i in todo], n, params=params, seeds=[seeds[i] for i in todo],
                                  docs_per_batch=len(todo), names=[names[i] for i in todo] if names else None)
            for i, samples in zip(todo, drawn, strict=True):
                out[i] = samples
                self.put(keys[i], samples)
        return out  # type: ignore[return-value]

_STORES: dict[str, CandidateStore] = {}


def default_store() -> CandidateStore:
    """The process-wide store at ``<cache dir>/candidates.sqlite`` (one connection per path)."""
    path = str(settings.cache_dir() / "candidates.sqlite")
    if path not in _STORES:
        _STORES[path] = CandidateStore(path)
    return _STORES[path]
