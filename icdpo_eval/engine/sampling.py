"""Sampling policy of the engine: the parameters of a draw, per-row seeding, exact top-k / top-p, and what a draw
returns (:class:`Sample`).

Pure functions over logits; no model here. Imported by :mod:`.engine` (the decode loop).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

TOPK_PREFILTER = 64


@dataclass(frozen=True)
class SamplingParams:
    """How to draw continuations. ``top_k`` 0 = off; ``temperature`` 0 or ``do_sample=False`` = greedy.

    Order of the warpers, as in transformers: temperature, then top-k, then top-p (on the
    renormalised top-k distribution)."""

    max_new_tokens: int = 128
    top_p: float = 1.0
    top_k: int = 0
    temperature: float = 1.0
    do_sample: bool = True
    stop: tuple[str, ...] = ()
    min_new_tokens: int = 0  # EOS is masked before this many new tokens (HF's min_new_tokens; benchmarks)
    repetition_penalty: float = 1.0  # HF's: a seen token's logit divided (> 0) or multiplied (< 0) by it (URIAL)

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature <= 0


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts, independent of Python's hash randomisation."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def row_generator(seed: int, row: int) -> torch.Generator:
    """The generator of sample row ``row`` of a context seeded ``seed`` (shared by Engine.sample and Session)."""
    g = torch.Generator()
    g.manual_seed(stable_seed(seed, row))
    return g


def top_p_choice(logits: torch.Tensor, top_p: float, uniforms: torch.Tensor, top_k: int = 0) -> torch.Tensor:
    """Exact top-k + nucleus sampling by inverse CDF, one uniform in [0, 1) per row.

    With ``top_k`` > 0 only the k most likely tokens stay, renormalised (transformers' TopKLogitsWarper,
    which runs before TopPLogitsWarper). Then token i (in descending-probability order) is kept iff the
    mass strictly before it is < top_p, the same set as transformers' TopPLogitsWarper. Without top-k, a
    top-64 prefilter is exact whenever its mass reaches top_p; the other rows fall back to a full sort.
    """
    probs = torch.softmax(logits.float(), dim=-1)
    vocab = probs.shape[-1]
    if 0 < top_k < vocab:
        vals, idx = probs.topk(top_k, dim=-1)
        vals = vals / vals.sum(-1, keepdim=True)
        return _nucleus_pick(vals, idx, top_p, uniforms)
    vals, idx = probs.topk(min(TOPK_PREFILTER, vocab), dim=-1)
    out = _nucleus_pick(vals, idx, top_p, uniforms)
    short = vals.sum(-1) < top_p
    if bool(short.any()):
        full_vals, full_idx = probs[short].sort(dim=-1, descending=True)
        out[short] = _nucleus_pick(full_vals, full_idx, top_p, uniforms[short])
    return out


def _nucleus_pick(vals: torch.Tensor, idx: torch.Tensor, top_p: float, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF pick among descending-sorted ``vals`` restricted to the nucleus."""
    keep = (vals.cumsum(-1) - vals) < top_p
    keep[:, 0] = True
    cdf = torch.where(keep, vals, torch.zeros_like(vals)).cumsum(-1)
    pos = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True)
    # never land past the last kept token (float edge at the very end of the CDF)
    pos = torch.minimum(pos, keep.long().sum(-1, keepdim=True) - 1)
    return idx.gather(-1, pos).squeeze(-1)


@dataclass
class Sample:
    """One sampled continuation: raw tokens, their log-probs under the sampling context, raw text.

    ``eos_logprobs[i]`` is log p(EOS | context, token_ids[:i]) (the engine's scoring EOS token), for every
    step the sampler computed a distribution at: ``len(token_ids) + 1`` entries when the row ended with
    EOS, ``len(token_ids)`` otherwise."""

    token_ids: list[int]
    token_logprobs: list[float]
    text: str
    stop_reason: str = "length"  # "eos" | "stop" | "length"
    eos_logprobs: list[float] = field(default_factory=list)

    def logprob_of_prefix(self, ids: Sequence[int], *, eos: bool = False) -> float | None:
        """log p(ids | context), plus log p(EOS | context, ids) with ``eos``, when ``ids`` is a prefix of the
        sampled tokens and the sampler computed the needed distributions (free reuse); else None."""
        n = len(ids)
        if n > len(self.token_ids) or list(ids) != self.token_ids[:n]:
            return None
        if not eos:
            return None if n == 0 else float(sum(self.token_logprobs[:n]))
        if n >= len(self.eos_logprobs):
            return None
        return float(sum(self.token_logprobs[:n]) + self.eos_logprobs[n])
