"""Scorers: one interface for every way of ranking candidate responses.

A scorer takes groups of :class:`Candidate` (all candidates of one prompt form a group, so contexts
they share are encoded once) and returns one float per candidate; larger is better.

* ``s``     S(y)  = log π(y | d+, x) − log π(y | x)          (ICDPO)
* ``s_hat`` Ŝ(y)  = log π(y | d+, x) − log π(y | d−, x)      (ICDPO with the negative template)
* ``icl``   log π(y | d+, x)                                   (the ICL-scorer ablation)

log π(y | d+, x) is taken for free from the sampling pass when the candidate's tokens are a prefix of
what was sampled under that very context (the usual case); everything else goes through
:meth:`Engine.logprobs_ids`, one batched pass per context over its cached prefix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from icdpo_eval.engine import Engine, Sample
from icdpo_eval.prompts import build_context

SCORERS = ("s", "s_hat", "icl")


@dataclass
class Candidate:
    """A response to score. ``continuation`` is the exact text scored after each context."""

    prompt: str
    continuation: str
    demos: list[dict] = field(default_factory=list)
    sample: Sample | None = None  # set when the candidate was sampled under the positive context


def positive_context(prompt: str, demos: Sequence[dict]) -> str:
    return build_context(prompt, [(d["prompt"], d["chosen"]) for d in demos])


def negative_context(prompt: str, demos: Sequence[dict]) -> str:
    return build_context(prompt, [(d["prompt"], d["rejected"]) for d in demos], negative=True)


class ContrastiveScorer:
    """S, Ŝ and the ICL scorer over one :class:`Engine` (the base model)."""

    def __init__(self, engine: Engine, kind: str = "s") -> None:
        if kind not in SCORERS:
            raise ValueError(f"scorer={kind!r} is not one of: {', '.join(SCORERS)}")
        self.engine = engine
        self.kind = kind
        self.reused = 0  # how many positive log-probs came free from the sampling pass

    def _reference_context(self, c: Candidate) -> str | None:
        if self.kind == "s":
            return c.prompt
        if self.kind == "s_hat":
            return negative_context(c.prompt, c.demos)
        return None

    def score(self, groups: Sequence[Sequence[Candidate]]) -> list[list[float]]:
        eng = self.engine
        conts = [[eng.encode_continuation(c.continuation) for c in g] for g in groups]
        pos: list[list[float | None]] = []
        need_ctx, need_cont, need_where = [], [], []
        for gi, g in enumerate(groups):
            row: list[float | None] = []
            missing = []
            for ci, c in enumerate(g):
                lp = c.sample.logprob_of_prefix(conts[gi][ci]) if c.sample is not None else None
                if lp is None and not conts[gi][ci]:
                    lp = 0.0
                self.reused += lp is not None and bool(conts[gi][ci])
                row.append(lp)
                if lp is None:
                    missing.append(ci)
            pos.append(row)
            if missing:
                need_ctx.append(eng.encode_context(positive_context(g[0].prompt, g[0].demos)))
                need_cont.append([conts[gi][ci] for ci in missing])
                need_where.append((gi, missing))
        if need_ctx:
            for (gi, missing), lps in zip(need_where, eng.logprobs_ids(need_ctx, need_cont)):
                for ci, lp in zip(missing, lps):
                    pos[gi][ci] = lp
        ref_ctx = [self._reference_context(g[0]) if g else None for g in groups]
        ref: list[list[float]] = [[0.0] * len(g) for g in groups]
        if self.kind != "icl":
            idx = [gi for gi, r in enumerate(ref_ctx) if r is not None and groups[gi]]
            lps = eng.logprobs_ids([eng.encode_context(ref_ctx[gi]) for gi in idx], [conts[gi] for gi in idx])
            for gi, lp in zip(idx, lps):
                ref[gi] = lp
        out = []
        for gi, g in enumerate(groups):
            out.append([
                -math.inf if not conts[gi][ci] else float(pos[gi][ci]) - ref[gi][ci]  # type: ignore[arg-type]
                for ci in range(len(g))
            ])
        return out
