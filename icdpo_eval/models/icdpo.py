"""``lm_eval --model icdpo``: ICDPO and its ICL-only ablations as an lm-eval model.

generate_until: retrieve K demos for the request's dialogue, sample N candidates from the base model
under the positive in-context prompt, cut them at turn markers, score them with S / Ŝ / ICL, return
the best (or, for the ablations, a random one / the single sample). The defaults are the released code's
settings (docs/fidelity.md); every option is declared in :data:`icdpo_eval.config.options.ICDPO`.
loglikelihood: the configured scorer's value of (context, continuation), so any multiple-choice task
ranks its choices by S / Ŝ / ICL.
"""

from __future__ import annotations

import logging

from icdpo_eval.config.options import ICDPO
from icdpo_eval.engine import SamplingParams
from icdpo_eval.method import instructions
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.scorers import ContrastiveScorer, negative_context, positive_context
from icdpo_eval.models.base import DemoRetrieval, MethodLM

log = logging.getLogger(__name__)


class ICDPOLM(DemoRetrieval, MethodLM):
    """ICDPO over one base model. Options: docs/options.md (declared in :data:`icdpo_eval.config.options.ICDPO`)."""

    method = "icdpo"
    OPTIONS = ICDPO

    def validate(self) -> None:
        cfg = self.cfg
        self.scorer_kind = cfg.scorer
        self.select = cfg.select
        if self.select == "single":
            self.n = 1
        self.instructions = instructions.load(cfg.instructions)
        self.setup_retrieval()

    def load(self) -> None:
        self.load_engine()
        self.scorer = ContrastiveScorer(self.engine, self.scorer_kind, score_eos=self.cfg.score_eos,
                                        empty=self.cfg.empty)

    def model_info(self) -> dict:
        return {"n": self.n, **self.retrieval_info()}

    def resolved(self) -> dict:
        return {**super().resolved(), **self.retrieval_resolved(), "n": self.n}

    def demos_for(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[dict]]:
        return self.retrieve(task, prompts, exclude_self)

    def contexts_of(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[str]]:
        tpl = self.template(task)
        out = []
        for p, d in zip(prompts, self.retrieve(task, prompts, exclude_self)):
            ctxs = [positive_context(p, d, tpl)]
            if self.scorer_kind == "s":
                ctxs.append(tpl.zero_shot(p))
            elif self.scorer_kind == "s_hat":
                ctxs.append(negative_context(p, d, tpl))
            out.append(ctxs)
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = super().generate_until(requests, disable_tqdm)
        if self.stats["empty"]:
            log.warning("icdpo: %d of %d documents returned an empty response", self.stats["empty"], len(requests))
        return out

    def choices(self, task: str | None, prompts: list[str], params: SamplingParams, *, select: str | None = None,
                names: list[str] | None = None) -> list:
        """ICDPO on ``prompts`` (already prepared): K demos each, N candidates under the positive prompt, scored and
        selected (``select``: this model's unless given; ``random`` / ``single`` score nothing). The one sampling
        path of the method: generation and ``build-rank-set`` (which keeps every candidate) call it."""
        demos = self.retrieve(task, prompts)
        tpl = self.template(task)
        return sample_and_select(
            self.engine, self.scorer, prompts, [positive_context(p, d, tpl) for p, d in zip(prompts, demos)], demos,
            n=self.n, params=params, select=select or self.select, seed=self.seed, empty=self.cfg.empty,
            template=tpl, names=names, store=self.candidate_store(), stats=self.stats)

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        params = self.sampling_params(gk, task)
        prompts = [self.prepare(task, r.args[0]) for r in reqs]
        choices = self.choices(task, prompts, params, names=[f"{task} doc {r.doc_id}" for r in reqs])
        self.stats["empty"] += sum(not c.text for c in choices)
        return choices
