"""``lm_eval --model rm_bon``: best-of-N with a teacher LLM as the reward (the paper's RM-BoN baseline).

N candidates are sampled from the base model under the plain (zero-shot) prompt, top-p, cut at turn
markers; the teacher's log-probability of each response given the dialogue (its chat template, GPTScore
style; per token with ``normalize=true``) picks the best. ``loglikelihood`` returns that teacher score,
so multiple-choice / MRR tasks rank candidates by the teacher. Generator and scorer are the shared ones:
:func:`icdpo_eval.method.best_of_n.sample_and_select` on the engine, :class:`icdpo_eval.method.teacher.TeacherScorer`.
"""

from __future__ import annotations

from typing import Any

from icdpo_eval.data import embedded
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.teacher import TeacherScorer, load_teacher, require_scorer
from icdpo_eval.models.args import as_batch_size, as_bool, as_int, check_model_path
from icdpo_eval.models.base import MethodLM


class RMBoNLM(MethodLM):
    """RM-BoN over one base model and one (local) teacher. model_args: see docs/baselines_rm.md."""

    method = "rm_bon"

    def __init__(
        self,
        pretrained: str | None = None,
        teacher: str = embedded.TEACHER_ALIAS,
        n: int | str = 3,
        preset: str = "paper",
        top_p: float | str | None = None,
        top_k: int | str | None = None,
        temperature: float | str | None = None,
        max_new_tokens: int | str | None = None,
        normalize: bool | str = False,
        seed: int | str = 1234,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int | str = 1,
        max_length: int | str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | str = False,
        **extra: Any,
    ) -> None:
        super().__init__()
        self._extra_args(extra)
        self.take_common_args(extra)
        self.n = as_int("n", n, 1)
        self.set_settings(preset)
        self.set_generation_args(top_p, temperature, max_new_tokens, top_k)
        self.normalize = as_bool("normalize", normalize)
        self.seed = as_int("seed", seed)
        self.batch_size = as_batch_size(batch_size)
        self.teacher_name = teacher or embedded.TEACHER_ALIAS
        require_scorer(self.teacher_name)  # an API teacher fails here, before any model is loaded
        check_model_path("teacher", self.teacher_name)  # before the base model loads (it checks pretrained)
        self.pretrained = pretrained or embedded.BASE_ALIAS
        self.load_engine(self.pretrained, device=device, dtype=dtype, max_length=max_length, revision=revision,
                         trust_remote_code=trust_remote_code)
        self.teacher = load_teacher(self.teacher_name, device=str(self.engine.device), dtype=dtype,
                                    max_rows=max(24, self.n * self.batch_size))
        self.scorer = TeacherScorer(self.teacher, self.normalize)

    def _extra_args(self, extra: dict[str, Any]) -> None:
        """Subclasses pop their own model_args from ``extra`` here (before the unknown-argument check)."""

    def get_model_info(self) -> dict:
        return {
            "method": self.method,
            "pretrained": self.pretrained,
            "teacher": self.teacher_name,
            "n": self.n,
            "normalize": self.normalize,
            **self.sampling_info(),
            "seed": self.seed,
            "dtype": str(self.engine.model.dtype),
        }

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        prompts = [r.args[0] for r in reqs]
        tpl = self.template(task)
        choices = sample_and_select(
            self.engine, self.scorer, prompts, [tpl.zero_shot(p) for p in prompts], [[] for _ in prompts],
            n=self.n, params=self.sampling_params(gk), seed=self.seed, empty=self.settings.empty,
            legacy_postprocess=self.settings.postprocess == "legacy", template=tpl,
            names=[f"{task} doc {r.doc_id}" for r in reqs])
        return choices
