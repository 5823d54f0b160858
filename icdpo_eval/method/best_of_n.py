"""Generator + scorer: sample N candidates per prompt on the engine, post-process, score, select.

Every best-of-N method is this function with a different sampling context and scorer: ICDPO samples
under the positive in-context prompt and scores with S / Ŝ; its ICL ablations select at random or
sample once.

As released, every candidate is eligible, an empty one included (``empty="score"``): it is a real
sample, and ties go to the first candidate (``numpy.argmax``). ``empty="skip"`` (``preset=legacy``)
never returns an empty candidate when a non-empty one exists.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from icdpo_eval.engine import Engine, SamplingParams, stable_seed
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

    def record(self) -> dict:
        """The candidates, their scores and the chosen index (for the result journal)."""
        return {"candidates": self.candidates, "scores": self.scores, "index": self.index}


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
    legacy_postprocess: bool = False,
    template: Template = HH,
    names: Sequence[str] | None = None,
) -> list[Choice]:
    """``contexts[i]`` is what prompt i's candidates are sampled under (all prompts decode together);
    ``scorer.score(groups)`` ranks them when ``select == "score"``."""
    if select not in SELECTS:
        raise ValueError(f"select={select!r} is not one of: {', '.join(SELECTS)}")
    seeds = [stable_seed(seed, p) for p in prompts]
    samples = engine.sample(list(contexts), n, params=params, seeds=seeds, docs_per_batch=len(contexts),
                            names=names)
    groups = [[Candidate(p, as_continuation(postprocess(s.text, params.stop, legacy=legacy_postprocess)), d, s,
                         template) for s in ss]
              for p, d, ss in zip(prompts, demos, samples)]
    if select == "score" and n > 1:
        scores = scorer.score(groups)
    else:
        scores = [[0.0] * len(g) for g in groups]
    out = []
    for p, g, sc in zip(prompts, groups, scores):
        texts = [c.continuation[1:] for c in g]
        eligible = [i for i, t in enumerate(texts) if t] if empty == "skip" else list(range(len(texts)))
        if not eligible:
            out.append(Choice("", texts, sc, None))
            continue
        if select == "random":
            best = random.Random(stable_seed(seed, "select", p)).choice(eligible)
        else:
            best = max(eligible, key=lambda i: sc[i])
        out.append(Choice(texts[best], texts, sc, best))
    return out
