"""``lm_eval --model length_bon``: a length-only control row, best-of-N by response length.

The same N samples as ``rm_bon`` (base model, plain prompt, same seeds, so the same candidates), but the
"reward" is the candidate's length in base-model tokens: ``pick=longest`` returns the longest,
``pick=shortest`` the shortest (ties: the first). Next to RM-BoN and ICDPO in a leaderboard it shows how
much of a gain length alone buys (docs/length.md). ``loglikelihood`` returns the signed token count.
"""

from __future__ import annotations

from collections.abc import Sequence

from icdpo_eval.config.options import LENGTH_BON
from icdpo_eval.engine import Engine
from icdpo_eval.method.scorers import Candidate
from icdpo_eval.models.base import MethodLM, PlainBestOfN


class LengthScorer:
    """+/- the candidate's token count under the engine's tokenizer (the scorer interface of method/scorers)."""

    def __init__(self, engine: Engine, pick: str = "longest") -> None:
        self.engine = engine
        self.sign = 1.0 if pick == "longest" else -1.0

    def score(self, groups: Sequence[Sequence[Candidate]]) -> list[list[float]]:
        return [[self.sign * len(self.engine.encode_continuation(c.continuation.strip())) for c in g] for g in groups]


class LengthBoNLM(PlainBestOfN, MethodLM):
    """Best-of-N by length over one base model (see the module docstring). Options: docs/options.md."""

    method = "length_bon"
    OPTIONS = LENGTH_BON

    def validate(self) -> None:
        self.pick = self.cfg.pick

    def load(self) -> None:
        self.load_engine()
        self.scorer = LengthScorer(self.engine, self.pick)
