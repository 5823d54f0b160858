"""``lm_eval --model length_bon``: a length-only control row, best-of-N by response length.

The same N samples as ``rm_bon`` (base model, plain prompt, same seeds, so the same candidates), but the
"reward" is the candidate's length in base-model tokens: ``pick=longest`` returns the longest,
``pick=shortest`` the shortest (ties: the first). Next to RM-BoN and ICDPO in a leaderboard it shows how
much of a gain length alone buys (docs/length.md). ``loglikelihood`` returns the signed token count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from icdpo_eval.data import embedded
from icdpo_eval.engine import Engine
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.scorers import Candidate
from icdpo_eval.models.args import as_batch_size, as_int, choice
from icdpo_eval.models.base import MethodLM

PICKS = ("longest", "shortest")


class LengthScorer:
    """+/- the candidate's token count under the engine's tokenizer (the scorer interface of method/scorers)."""

    def __init__(self, engine: Engine, pick: str = "longest") -> None:
        self.engine = engine
        self.sign = 1.0 if choice("pick", pick, PICKS) == "longest" else -1.0

    def score(self, groups: Sequence[Sequence[Candidate]]) -> list[list[float]]:
        return [[self.sign * len(self.engine.encode_continuation(c.continuation.strip())) for c in g] for g in groups]


class LengthBoNLM(MethodLM):
    """Best-of-N by length over one base model (see the module docstring)."""

    method = "length_bon"

    def __init__(self, pretrained: str | None = None, pick: str = "longest", n: int | str = 3, preset: str = "paper",
                 top_p: float | str | None = None, top_k: int | str | None = None,
                 temperature: float | str | None = None, max_new_tokens: int | str | None = None,
                 seed: int | str = 1234, dtype: str = "auto", device: str | None = None, batch_size: int | str = 1,
                 max_length: int | str | None = None, revision: str | None = None,
                 trust_remote_code: bool | str = False, **unknown: Any) -> None:
        super().__init__()
        self.take_common_args(unknown)
        self.pick = choice("pick", pick, PICKS)
        self.n = as_int("n", n, 1)
        self.set_settings(preset)
        self.set_generation_args(top_p, temperature, max_new_tokens, top_k)
        self.seed = as_int("seed", seed)
        self.batch_size = as_batch_size(batch_size)
        self.pretrained = pretrained or embedded.BASE_ALIAS
        self.load_engine(self.pretrained, device=device, dtype=dtype, max_length=max_length, revision=revision,
                         trust_remote_code=trust_remote_code)
        self.scorer = LengthScorer(self.engine, self.pick)

    def get_model_info(self) -> dict:
        return {"method": self.method, "pretrained": self.pretrained, "pick": self.pick, "n": self.n,
                **self.sampling_info(), "seed": self.seed, "dtype": str(self.engine.model.dtype)}

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        prompts = [r.args[0] for r in reqs]
        tpl = self.template(task)
        return sample_and_select(
            self.engine, self.scorer, prompts, [tpl.zero_shot(p) for p in prompts], [[] for _ in prompts],
            n=self.n, params=self.sampling_params(gk), seed=self.seed, empty=self.settings.empty,
            legacy_postprocess=self.settings.postprocess == "legacy", template=tpl,
            names=[f"{task} doc {r.doc_id}" for r in reqs])
