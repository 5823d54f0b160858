"""Generator + scorer: sample N candidates per prompt on the engine, post-process, score, select.

Every best-of-N method is this function with a different sampling context and scorer: ICDPO samples
under the positive in-context prompt and scores with S / Ŝ; its ICL ablations select at random or
sample once.

As released, every candidate is eligible, an empty one included (``empty="score"``): it is a real
sample, and ties go to the first candidate (``numpy.argmax``). ``empty="skip"`` never returns an empty
candidate when a non-empty one exists.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from icdpo_eval.engine import Engine, SamplingParams, stable_seed
from icdpo_eval.method.candidates import CandidateStore
from icdpo_eval.method.prompts import HH, Template, as_continuation, postprocess
from icdpo_eval.method.scorers import Candidate

SELECTS = ("score", "random", "single")


@dataclass
class Choice:
    """The selected response of one prompt, with every candidate and its score (for inspection)."""

    text: str
    candidates: list[str]
    scores: list[float]
    index: int | None  # None when no candidate was eligible (empty="skip" and all empty)
    terms: dict[str, list[float]] = field(default_factory=dict)  # the scorer's terms per candidate, by label
    demos: list[dict] = field(default_factory=list)  # the demonstrations the candidates were sampled / scored with

    def record(self) -> dict:
        """What the method saw and computed for this prompt (the result journal; the report shows it)."""
        return {"candidates": self.candidates, "scores": self.scores, "index": self.index, "terms": self.terms,
                "demos": [{k: d[k] for k in ("id", "prompt", "chosen", "rejected") if k in d} for d in self.demos]}


@dataclass
class Answer:
    """One response of a method that selects no candidate (URIAL, ARGS) and what it did to get it (``internals``:
    in the journal, each lm-eval sample and the report)."""

    text: str
    internals: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {"internals": self.internals}


def sample_and_select(
    engine: Engine,
    scorer,
    prompts: Sequence[str],
    contexts: Sequence[str],
    demos: Sequence[list[dict]],
    *,
    n: int,
    params: SamplingParams,
    select: str = "score",
    seed: int = 1234,
    empty: str = "score",
    template: Template = HH,
    names: Sequence[str] | None = None,
    store: CandidateStore | None = None,
    stats: dict[str, int] | None = None,
) -> list[Choice]:
    """``contexts[i]`` is what prompt i's candidates are sampled under (all prompts decode together);
    ``scorer.score(groups)`` ranks them when ``select == "score"``. With a ``store``, candidates already drawn
    under the same model, context, N, seed and sampling settings are reused (counted in ``stats``)."""
    if select not in SELECTS:
        raise ValueError(f"select={select!r} is not one of: {', '.join(SELECTS)}")
    seeds = [stable_seed(seed, p) for p in prompts]
    if store is not None:
        samples = store.sample(engine, list(contexts), n, params=params, seeds=seeds, names=names, stats=stats)
    else:
        samples = engine.sample(list(contexts), n, params=params, seeds=seeds, docs_per_batch=len(contexts),
                                names=names)
        if stats is not None:
            stats["candidates_sampled"] = stats.get("candidates_sampled", 0) + len(contexts)
    groups = [[Candidate(p, as_continuation(postprocess(s.text, params.stop)), d, s,
                         template) for s in ss]
              for p, d, ss in zip(prompts, demos, samples)]
    terms: dict[str, list[list[float]]] = {}
    if select == "score" and n > 1:
        scores = scorer.score(groups)
        terms = dict(getattr(scorer, "last_terms", None) or {})
    else:
        scores = [[0.0] * len(g) for g in groups]
    out = []
    for gi, (p, g, sc) in enumerate(zip(prompts, groups, scores)):
        texts = [c.continuation[1:] for c in g]
        mine = {label: vals[gi] for label, vals in terms.items()}
        eligible = [i for i, t in enumerate(texts) if t] if empty == "skip" else list(range(len(texts)))
        if not eligible:
            out.append(Choice("", texts, sc, None, mine, list(demos[gi])))
            continue
        if select == "random":
            best = random.Random(stable_seed(seed, "select", p)).choice(eligible)
        else:
            best = max(eligible, key=lambda i: sc[i])
        out.append(Choice(texts[best], texts, sc, best, mine, list(demos[gi])))
    return out
