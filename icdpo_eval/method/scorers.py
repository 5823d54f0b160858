"""Scorers: one interface for every way of ranking candidate responses.

A scorer takes groups of :class:`Candidate` (all candidates of one prompt form a group, so contexts
they share are encoded once) and returns one float per candidate; larger is better.

* ``s``     S(y)  = log π(y | d+, x) − log π(y | x)          (ICDPO)
* ``s_hat`` Ŝ(y)  = log π(y | d+, x) − log π(y | d−, x)      (ICDPO with the negative template)
* ``icl``   log π(y | d+, x)                                   (the ICL-scorer ablation)

As released, each term is the summed log-prob of ``" " + y`` **followed by the EOS token**
(``score_eos``), with no length normalisation, and an empty candidate is a real sample scored like any
other (``empty="score"``; ``"skip"`` gives it −inf).

log π(y | d+, x) is taken for free from the sampling pass when the candidate's tokens are a prefix of
what was sampled under that very context (the usual case; the sampler also recorded log p(EOS) at each
step); everything else goes through :meth:`Engine.logprobs_ids`, one batched pass per context over its
cached prefix.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
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


@dataclass(frozen=True)
class Term:
    """log π(continuation | context) of each candidate on the scorer's engine.

    ``context(c)`` gives the context of candidate ``c`` (called once per group: a group's candidates share
    it); ``reuse``: the candidates' samples were drawn under this very context on this very model, so
    their sampling log-probs are the term's value (no pass needed); ``adapter_off``: evaluate with the
    engine's peft adapter disabled (DPO's reference model)."""

    context: Callable[[Candidate], str]
    reuse: bool = False
    adapter_off: bool = False
    label: str = "log p(y | context)"  # what the report calls this term's value


class LogProbScorer:
    """THE scorer: ``plus(y) − minus(y)`` (``minus`` optional), each term a summed log-prob of the candidate
    under a context (:class:`Term`). Every scorer in icdpo-eval is a choice of terms:

    ========================  =====================================  ================================
    scorer                    plus                                   minus
    ========================  =====================================  ================================
    S (ICDPO)                 log π(y | d+, x), reused from sampling  log π(y | x)
    Ŝ (ICDPO)                 log π(y | d+, x), reused                log π(y | d−, x)
    ICL                       log π(y | d+, x), reused                —
    policy (SFT / DPO)        log π(y | x), reused                    —
    DPO implicit reward       log π_dpo(y | x), reused                log π_ref(y | x) (adapter off)
    Ŝ on the DPO policy       log π_dpo(y | d+, x)                    log π_dpo(y | d−, x)
    teacher (RM-BoN)          log p_teacher(y | chat(x))              —
    ========================  =====================================  ================================

    ``eos``: the scored tokens end with the engine's EOS (the released scorer); ``continuation(c)``: the text
    scored (default ``c.continuation``); ``normalize``: divide by the number of scored text tokens.
    ``empty``: ``"score"`` scores an empty candidate like any other, ``"skip"`` gives every candidate whose
    text is blank −inf; a candidate with no token at all to score gets ``zero_tokens``. Each term's needed
    passes go to :meth:`Engine.logprobs_ids` in one call (each context encoded once, its candidates batched).
    """

    def __init__(self, engine: Engine, plus: Term, minus: Term | None = None, *, eos: bool = False,
                 empty: str = "score", normalize: bool = False, zero_tokens: float = -math.inf,
                 continuation: Callable[[Candidate], str] | None = None) -> None:
        if empty not in EMPTY_POLICIES:
            raise ValueError(f"empty={empty!r} is not one of: {', '.join(EMPTY_POLICIES)}")
        if eos and engine.score_eos_id is None:
            raise ValueError("score_eos=true needs a tokenizer with an eos_token; pass score_eos=false")
        if (plus.adapter_off or (minus is not None and minus.adapter_off)) and \
                not hasattr(engine.model, "disable_adapter"):
            raise ValueError("a reference term with the adapter off needs a peft model (base + adapter)")
        self.engine = engine
        self.plus, self.minus = plus, minus
        self.eos, self.empty, self.normalize, self.zero_tokens = eos, empty, normalize, zero_tokens
        self.continuation = continuation or (lambda c: c.continuation)
        self.reused = 0  # how many plus-term log-probs came free from the sampling pass
        # the last score() call's term values, {label: per group, per candidate} (the report shows them)
        self.last_terms: dict[str, list[list[float]]] = {}

    def _skipped(self, c: Candidate) -> bool:
        return self.empty == "skip" and not c.continuation.strip()

    def score(self, groups: Sequence[Sequence[Candidate]]) -> list[list[float]]:
        eng = self.engine
        eos = [eng.score_eos_id] if self.eos else []
        text_ids = [[[] if self._skipped(c) else eng.encode_continuation(self.continuation(c)) for c in g]
                    for g in groups]
        conts = [[[] if self._skipped(c) else ids + eos for c, ids in zip(g, row)]
                 for g, row in zip(groups, text_ids)]
        plus = self._term(self.plus, groups, text_ids, conts)
        minus = self._term(self.minus, groups, text_ids, conts) if self.minus else None
        self.last_terms = {self.plus.label: plus, **({self.minus.label: minus} if self.minus and minus else {})}
        out = []
        for gi, g in enumerate(groups):
            row = []
            for ci, c in enumerate(g):
                if self._skipped(c):
                    row.append(-math.inf)
                    continue
                if not conts[gi][ci]:
                    row.append(self.zero_tokens)
                    continue
                v = plus[gi][ci] - (minus[gi][ci] if minus else 0.0)
                row.append(v / max(len(text_ids[gi][ci]), 1) if self.normalize else v)
            out.append(row)
        return out

    def _term(self, term: Term, groups: Sequence[Sequence[Candidate]], text_ids: list[list[list[int]]],
              conts: list[list[list[int]]]) -> list[list[float]]:
        """The term's value of every candidate: reused from the sampling pass where it can be, else computed
        (zero-token and skipped candidates are never sent: 0.0)."""
        vals: list[list[float | None]] = []
        for gi, g in enumerate(groups):
            row: list[float | None] = []
            for ci, c in enumerate(g):
                lp = None
                if not conts[gi][ci]:
                    lp = 0.0
                elif term.reuse and c.sample is not None:
                    lp = c.sample.logprob_of_prefix(text_ids[gi][ci], eos=self.eos)
                    self.reused += lp is not None
                row.append(lp)
            vals.append(row)
        need = [gi for gi, row in enumerate(vals) if any(v is None for v in row)]
        if need:
            eng = self.engine
            missing = {gi: [ci for ci, v in enumerate(vals[gi]) if v is None] for gi in need}
            ctx = [eng.encode_context(term.context(groups[gi][0])) for gi in need]
            todo = [[conts[gi][ci] for ci in missing[gi]] for gi in need]
            with self._model_state(term):
                got = eng.logprobs_ids(ctx, todo)
            for gi, lps in zip(need, got):
                for ci, lp in zip(missing[gi], lps):
                    vals[gi][ci] = lp
        return vals  # type: ignore[return-value]

    def _model_state(self, term: Term):
        return self.engine.model.disable_adapter() if term.adapter_off else contextlib.nullcontext()


def zero_shot_term(reuse: bool = False) -> Term:
    """log π(y | x): the candidate's plain prompt under its template."""
    return Term(lambda c: c.template.zero_shot(c.prompt), reuse=reuse, label="log p(y | x)")


def positive_term(reuse: bool = False) -> Term:
    """log π(y | d+, x): the in-context prompt with the chosen demos."""
    return Term(lambda c: positive_context(c.prompt, c.demos, c.template), reuse=reuse, label="log p(y | d+, x)")


def negative_term() -> Term:
    """log π(y | d−, x): the negative template with the rejected demos."""
    return Term(lambda c: negative_context(c.prompt, c.demos, c.template), label="log p(y | d-, x)")


class ContrastiveScorer(LogProbScorer):
    """S, Ŝ and the ICL scorer over one :class:`Engine` (the base model), the candidates sampled under d+.

    ``reuse=False`` when the candidates were sampled under another context (Ŝ on the DPO policy)."""

    def __init__(self, engine: Engine, kind: str = "s", *, score_eos: bool = True, empty: str = "score",
                 reuse: bool = True) -> None:
        if kind not in SCORERS:
            raise ValueError(f"scorer={kind!r} is not one of: {', '.join(SCORERS)}")
        minus = {"s": zero_shot_term(), "s_hat": negative_term(), "icl": None}[kind]
        super().__init__(engine, positive_term(reuse), minus, eos=score_eos, empty=empty)
        self.kind = kind
