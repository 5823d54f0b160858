"""Generator + scorer: sample N candidates per prompt on the engine, post-process, score, select.

Every best-of-N method is this function with a different sampling context and scorer: ICDPO samples
under the positive in-context prompt and scores with S / Ŝ; its ICL ablations select at random or
sample once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from icdpo_eval.engine import Engine, stable_seed
from icdpo_eval.prompts import as_continuation, postprocess
from icdpo_eval.scorers import Candidate

SELECTS = ("score", "random", "single")


@dataclass
class Choice:
    """The selected response of one prompt, with every candidate and its score (for inspection)."""

    text: str
    candidates: list[str]
    scores: list[float]
    index: int | None  # None when every candidate was empty


def sample_and_select(
    engine: Engine,
    scorer,
    prompts: Sequence[str],
    contexts: Sequence[str],
    demos: Sequence[list[dict]],
    *,
    n: int,
    select: str = "score",
    seed: int = 1234,
    max_new_tokens: int = 128,
    top_p: float = 0.8,
    temperature: float = 1.0,
    do_sample: bool = True,
    stops: Sequence[str] = (),
    names: Sequence[str] | None = None,
) -> list[Choice]:
    """``contexts[i]`` is what prompt i's candidates are sampled under (all prompts decode together);
    ``scorer.score(groups)`` ranks them when ``select == "score"``."""
    if select not in SELECTS:
        raise ValueError(f"select={select!r} is not one of: {', '.join(SELECTS)}")
    seeds = [stable_seed(seed, p) for p in prompts]
    samples = engine.sample(list(contexts), n, max_new_tokens=max_new_tokens, top_p=top_p,
                            temperature=temperature, do_sample=do_sample, seeds=seeds, stop=stops,
                            docs_per_batch=len(contexts), names=names)
    groups = [[Candidate(p, as_continuation(postprocess(s.text, stops)), d, s) for s in ss]
              for p, d, ss in zip(prompts, demos, samples)]
    if select == "score" and n > 1:
        scores = scorer.score(groups)
    else:
        scores = [[0.0] * len(g) for g in groups]
    out = []
    for p, g, sc in zip(prompts, groups, scores):
        texts = [c.continuation[1:] for c in g]
        nonempty = [i for i, t in enumerate(texts) if t]
        if not nonempty:
            out.append(Choice("", texts, sc, None))
            continue
        if select == "random":
            best = random.Random(stable_seed(seed, "select", p)).choice(nonempty)
        else:
            best = max(nonempty, key=lambda i: sc[i])
        out.append(Choice(texts[best], texts, sc, best))
    return out
