"""Weak-to-strong search (Zhou et al., NeurIPS 2024): chunk-level beam search over a frozen base model, guided by
the log-likelihood ratio of a small tuned / untuned pair.

* **Guide** (:class:`ImplicitReward`): ``log π_tuned(y | x) − log π_untuned(y | x)`` of the response text ``y`` so
  far, each model scoring the text with its own tokenizer (the guide need not share the base model's); summed
  token log-probs, no β, no length normalisation; a finished response is scored with the EOS token appended,
  an unfinished one without (as released). The pair is two engines, or one engine over base + LoRA adapter
  whose adapter is disabled for the untuned term (one model in memory, :class:`~icdpo_eval.method.scorers.Term`'s
  ``adapter_off``).
* **Search** (:func:`chunk_beam_search`): the first chunk is ``W·K`` samples of ``L`` tokens from the prompt
  (row j seeded as best-of-N's row j, so W = 1, K = N, L >= max_new_tokens *is* best-of-N under the guide, on
  the very same samples); every later chunk extends each kept partial response with K samples; all candidates
  are scored by the guide and the best W kept (ties: the earlier candidate). A finished candidate (EOS, a turn
  marker, or the token budget) stays in the pool: as released, it is carried K times with its score (the
  released loop repeats each kept sequence K times and a finished one only grows padding). The search stops
  when every kept candidate is finished; the answer is the best one.
* **Engine**: every chunk is one :meth:`Engine.sample_ids` call over the kept partial responses (their token ids
  as sampled, never re-tokenised): each is prefilled once and its cache expanded across its K rows. The released
  code keeps the base model's cache across chunks instead; ours re-encodes the partial responses once per chunk
  (same tokens, exact; a prefill per chunk is the cost, measured in docs/w2s.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from icdpo_eval.engine import Engine, SamplingParams, stable_seed
from icdpo_eval.method.prompts import HH, Template, as_continuation, cut_at_markers, postprocess
from icdpo_eval.method.scorers import Candidate, LogProbScorer, zero_shot_term


class ImplicitReward:
    """``log π_tuned(y | x) − log π_untuned(y | x)`` of candidate texts (see the module docstring). ``untuned``
    None: ``tuned`` is a peft model whose adapter is disabled for the untuned term."""

    def __init__(self, tuned: Engine, untuned: Engine | None = None) -> None:
        self.tuned, self.untuned = tuned, untuned
        plus = replace(zero_shot_term(), label="log p_tuned(y | x)")
        minus = replace(zero_shot_term(), label="log p_untuned(y | x)", adapter_off=untuned is None)
        self._scorers = {}
        for eos in (False, True):
            if untuned is None:
                self._scorers[eos] = (LogProbScorer(tuned, plus, minus, eos=eos, zero_tokens=0.0), None)
            else:
                self._scorers[eos] = (LogProbScorer(tuned, plus, eos=eos, zero_tokens=0.0),
                                      LogProbScorer(untuned, replace(minus, adapter_off=False), eos=eos,
                                                    zero_tokens=0.0))
        self.last_terms: dict[str, list[list[float]]] = {}

    def score(self, groups: Sequence[Sequence[Candidate]], finished: Sequence[Sequence[bool]] | None = None
              ) -> list[list[float]]:
        """One value per candidate; ``finished[g][c]``: candidate c of group g is complete (scored with EOS).
        Without ``finished`` every candidate is complete (a whole response, e.g. a ``*_pairs`` task's)."""
        finished = finished or [[True] * len(g) for g in groups]
        out = [[0.0] * len(g) for g in groups]
        terms: dict[str, list[list[float]]] = {}
        for eos in (False, True):
            idx = [[ci for ci, f in enumerate(fin) if f == eos] for fin in finished]
            sub = [[g[ci] for ci in ix] for g, ix in zip(groups, idx)]
            if not any(sub):
                continue
            first, second = self._scorers[eos]
            vals = first.score(sub)
            parts = dict(first.last_terms)
            if second is not None:
                ref = second.score(sub)
                vals = [[a - b for a, b in zip(ra, rb)] for ra, rb in zip(vals, ref)]
                parts.update(second.last_terms)
            for gi, ix in enumerate(idx):
                for ci, v in zip(ix, vals[gi]):
                    out[gi][ci] = v
                for label, per in parts.items():
                    row = terms.setdefault(label, [[0.0] * len(g) for g in groups])[gi]
                    for ci, v in zip(ix, per[gi]):
                        row[ci] = v
        self.last_terms = terms
        return out


@dataclass
class Beam:
    """A partial response: the base model's token ids as sampled, its text, whether it is finished, its score."""

    ids: list[int]
    text: str
    finished: bool
    score: float = -math.inf


@dataclass
class Searched:
    """The answer of one prompt and what the search did (``internals``: per chunk, each candidate's text, guide
    score and whether it was kept)."""

    text: str
    chunks: int = 0
    internals: list[dict] = field(default_factory=list)

    def record(self) -> dict:
        return {"internals": {"method": "w2s", "chunks": self.internals}}


def _read(base: Engine, ids: list[int], stop_reason: str, stops: tuple[str, ...], max_new: int) -> tuple[str, bool]:
    """(text, finished) of a partial response: finished at EOS, a turn marker or the token budget; a finished one is
    post-processed as every method's answer, an unfinished one only left-stripped."""
    full = base.decode(ids)
    cut, marker = cut_at_markers(full, stops)
    finished = marker or stop_reason != "length" or len(ids) >= max_new
    return (postprocess(full, stops) if finished else cut.lstrip()), finished


def chunk_beam_search(base: Engine, guide: ImplicitReward, prompt: str, context: str, *, params: SamplingParams,
                      beam_width: int = 2, successors: int = 2, chunk_length: int = 30, seed: int = 1234,
                      template: Template = HH) -> Searched:
    """Weak-to-strong search's answer to ``prompt`` sampled under ``context`` (see the module docstring)."""
    stops = tuple(params.stop)
    ctx = base.encode_context(context)
    pool: list[Beam] = [Beam([], "", False)]
    out = Searched("")
    for chunk in range(math.ceil(params.max_new_tokens / chunk_length)):
        open_beams = [b for b in pool if not b.finished]
        if not open_beams:
            break
        k = beam_width * successors if chunk == 0 else successors
        step = replace(params, max_new_tokens=min(chunk_length, params.max_new_tokens - len(open_beams[0].ids)))
        # chunk 0: best-of-N's seeds (row j of the prompt); later: one stream per (chunk, beam)
        seeds = [stable_seed(seed, prompt) if chunk == 0 else stable_seed(seed, prompt, "w2s", chunk, b)
                 for b in range(len(open_beams))]
        drawn = base.sample_ids([ctx + b.ids for b in open_beams], k, step, seeds, docs_per_batch=len(open_beams))
        fresh: list[Beam] = []
        for b, samples in zip(open_beams, drawn):
            for s in samples:
                ids = b.ids + s.token_ids
                text, done = _read(base, ids, s.stop_reason, stops, params.max_new_tokens)
                fresh.append(Beam(ids, text, done))
        cands = [Candidate(prompt, as_continuation(b.text), template=template) for b in fresh]
        for b, v in zip(fresh, guide.score([cands], [[b.finished for b in fresh]])[0]):
            b.score = v
        # a kept finished candidate competes again, K times over (as released), with the score it had
        carried = [b for b in pool if b.finished for _ in range(successors)]
        candidates = carried + fresh
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
        pool = [candidates[i] for i in order[:beam_width]]
        out.chunks += 1
        kept = set(order[:beam_width])
        out.internals.append({"chunk": chunk, "candidates": [
            {"text": c.text, "score": c.score, "finished": c.finished, "kept": i in kept, "carried": i < len(carried)}
            for i, c in enumerate(candidates)]})
    best = max(pool, key=lambda b: b.score) if pool else Beam([], "", True)
    out.text = best.text if best.finished else postprocess(best.text, stops)
    return out
