"""Scorers: one interface for every way of ranking candidate responses.

A scorer takes groups of :class:`Candidate` (all candidates of one prompt form a group, so contexts
they share are encoded once) and returns one float per candidate; larger is better.

* ``s``     S(y)  = log π(y | d+, x) − log π(y | x)          (ICDPO)
* ``s_hat`` Ŝ(y)  = log π(y | d+, x) − log π(y | d−, x)      (ICDPO with the negative template)
* ``icl``   log π(y | d+, x)                                   (the ICL-scorer ablation)

As released, each term is the summed log-prob of ``" " + y`` **followed by the EOS token**
(``score_eos``; off in ``preset=legacy``), with no length normalisation, and an empty candidate is a
real sample scored like any other (``empty="score"``; ``"skip"`` gives it −inf, the 0.1 behaviour).

log π(y | d+, x) is taken for free from the sampling pass when the candidate's tokens are a prefix of
what was sampled under that very context (the usual case; the sampler also recorded log p(EOS) at each
step); everything else goes through :meth:`Engine.logprobs_ids`, one batched pass per context over its
cached prefix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from icdpo_eval.engine import Engine, Sample
from icdpo_eval.method.prompts import HH, Template

SCORERS = ("s", "s_hat", "icl")
EMPTY_POLICIES = ("score", "skip")


@dataclass
class Candidate:
    """A response to score. ``continuation`` is the exact text scored after each context."""

    prompt: str
    continuation: str
    demos: list[dict] = field(default_factory=list)
    sample: Sample | None = None  # set when the candidate was sampled under the positive context
    template: Template = HH


def positive_context(prompt: str, demos: Sequence[dict], template: Template = HH) -> str:
    return template.context(prompt, [(d["prompt"], d["chosen"]) for d in demos])


def negative_context(prompt: str, demos: Sequence[dict], template: Template = HH) -> str:
    return template.context(prompt, [(d["prompt"], d["rejected"]) for d in demos], negative=True)


class ContrastiveScorer:
    """S, Ŝ and the ICL scorer over one :class:`Engine` (the base model)."""

    def __init__(self, engine: Engine, kind: str = "s", *, score_eos: bool = True, empty: str = "score") -> None:
        if kind not in SCORERS:
            raise ValueError(f"scorer={kind!r} is not one of: {', '.join(SCORERS)}")
        if empty not in EMPTY_POLICIES:
            raise ValueError(f"empty={empty!r} is not one of: {', '.join(EMPTY_POLICIES)}")
        if score_eos and engine.score_eos_id is None:
            raise ValueError("score_eos=true needs a tokenizer with an eos_token; pass score_eos=false")
        self.engine = engine
        self.kind = kind
        self.score_eos = score_eos
        self.empty = empty
        self.reused = 0  # how many positive log-probs came free from the sampling pass

    def _reference_context(self, c: Candidate) -> str | None:
        if self.kind == "s":
            return c.template.zero_shot(c.prompt)
        if self.kind == "s_hat":
            return negative_context(c.prompt, c.demos, c.template)
        return None

    def _skipped(self, c: Candidate, ids: list[int]) -> bool:
        if self.empty == "skip":
            return not c.continuation.strip()
        return not ids  # nothing to score (only possible without EOS)

    def score(self, groups: Sequence[Sequence[Candidate]]) -> list[list[float]]:
        eng = self.engine
        eos = [eng.score_eos_id] if self.score_eos else []
        text_ids = [[eng.encode_continuation(c.continuation) for c in g] for g in groups]
        conts = [[ids + eos for ids in row] for row in text_ids]
        pos: list[list[float | None]] = []
        need_ctx, need_cont, need_where = [], [], []
        for gi, g in enumerate(groups):
            row: list[float | None] = []
            missing = []
            for ci, c in enumerate(g):
                lp = None
                if c.sample is not None:
                    lp = c.sample.logprob_of_prefix(text_ids[gi][ci], eos=self.score_eos)
                if lp is None and not conts[gi][ci]:
                    lp = 0.0
                self.reused += lp is not None and bool(conts[gi][ci])
                row.append(lp)
                if lp is None:
                    missing.append(ci)
            pos.append(row)
            if missing:
                need_ctx.append(eng.encode_context(positive_context(g[0].prompt, g[0].demos, g[0].template)))
                need_cont.append([conts[gi][ci] for ci in missing])
                need_where.append((gi, missing))
        if need_ctx:
            for (gi, missing), lps in zip(need_where, eng.logprobs_ids(need_ctx, need_cont)):
                for ci, lp in zip(missing, lps):
                    pos[gi][ci] = lp
        ref: list[list[float]] = [[0.0] * len(g) for g in groups]
        if self.kind != "icl":
            idx = [gi for gi, g in enumerate(groups) if g]
            ctx = [eng.encode_context(self._reference_context(groups[gi][0]) or "") for gi in idx]
            for gi, lp in zip(idx, eng.logprobs_ids(ctx, [conts[gi] for gi in idx])):
                ref[gi] = lp
        return [[-math.inf if self._skipped(c, conts[gi][ci]) else float(pos[gi][ci]) - ref[gi][ci]  # type: ignore
                 for ci, c in enumerate(g)] for gi, g in enumerate(groups)]
