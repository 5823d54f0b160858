"""``lm_eval --model rm_bon``: best-of-N with a teacher LLM as the reward (the paper's RM-BoN baseline).

N candidates are sampled from the base model under the plain (zero-shot) prompt, top-p, cut at turn
markers; the teacher's log-probability of each response given the dialogue (its chat template, GPTScore
style; per token with ``normalize=true``) picks the best. ``loglikelihood`` returns that teacher score,
so multiple-choice / MRR tasks rank candidates by the teacher. Generator and scorer are the shared ones:
:func:`icdpo_eval.method.best_of_n.sample_and_select` on the engine, :class:`icdpo_eval.method.teacher.TeacherScorer`.
"""

from __future__ import annotations

from icdpo_eval.config import names
from icdpo_eval.config.options import RM_BON
from icdpo_eval.method.teacher import TeacherScorer, load_teacher, require_scorer
from icdpo_eval.models.base import MethodLM, PlainBestOfN


class RMBoNLM(PlainBestOfN, MethodLM):
    """RM-BoN over one base model and one (local) teacher. Options: docs/options.md."""

    method = "rm_bon"
    OPTIONS = RM_BON

    @classmethod
    def weight_keys(cls, model_args, device=None) -> list[tuple]:
        """The base model's and the teacher's."""
        cfg = cls.OPTIONS.parse(model_args)
        base = cls._engine_key(cfg, names.resolve(cfg.pretrained), device)
        teacher = names.canonical(cfg.teacher)
        if teacher.startswith("openai:"):
            return [base]
        from icdpo_eval.engine import weights_key

        return [base, weights_key(names.resolve(teacher, names.TEACHER), device=base[2], dtype=cfg.dtype)]

    def validate(self) -> None:
        self.normalize = self.cfg.normalize
        self.teacher_name = names.canonical(self.cfg.teacher)
        require_scorer(self.teacher_name)  # an API teacher fails here, before any model is loaded

    def load(self) -> None:
        self.load_engine()
        self.teacher = load_teacher(self.teacher_name, device=str(self.engine.device), dtype=self.cfg.dtype,
                                    max_rows=max(24, self.n * self.batch_size), kernels=self.cfg.decode_kernels)
        self.scorer = TeacherScorer(self.teacher, self.normalize)
