"""``lm_eval --model dpo``: DPO+LoRA (base + an adapter from ``icdpo-eval train dpo``), optionally reranked.

``rescore``:

* ``none``     one sample per prompt from the DPO policy (plain prompt, task's top-p);
* ``implicit`` N samples from the DPO policy, the best by the DPO implicit reward
  log π_dpo(y | x) − log π_ref(y | x), π_ref = the same model with the adapter disabled (the base);
* ``s_hat``    N samples from the DPO policy, the best by Ŝ on the DPO policy:
  log π_dpo(y | d+, x) − log π_dpo(y | d−, x), with K demos retrieved as in ``icdpo`` (the paper's DPO+Ŝ).

loglikelihood returns the same scorer's value (policy log-prob for ``none``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from icdpo_eval.baselines.sft_lora import SFTLoRALM, policy_scorer
from icdpo_eval.config.options import DPO, DPO_S_HAT_ONLY
from icdpo_eval.engine import Engine
from icdpo_eval.errors import OptionError
from icdpo_eval.method import instructions
from icdpo_eval.method.scorers import (
    ContrastiveScorer,
    LogProbScorer,
    negative_context,
    positive_context,
    zero_shot_term,
)
from icdpo_eval.models.base import DemoRetrieval


def implicit_reward_scorer(engine: Engine) -> LogProbScorer:
    """DPO's implicit reward log π_dpo(y | x) − log π_ref(y | x); π_ref is the engine's peft model with its
    adapter disabled, so policy and reference share one model and one engine code path (the samples'
    log-probs are the policy's: reused for the first term only)."""
    reference = replace(zero_shot_term(), adapter_off=True, label="log p_ref(y | x)")
    return LogProbScorer(engine, zero_shot_term(reuse=True), reference, zero_tokens=0.0)


class DPOLM(DemoRetrieval, SFTLoRALM):
    """Base model + DPO LoRA adapter; ``rescore`` none / implicit / s_hat (see the module docstring)."""

    method = "dpo"
    OPTIONS = DPO

    def check_method_options(self) -> None:
        cfg = self.cfg
        self.rescore = cfg.rescore
        if self.rescore == "none":
            self.n = 1
        if self.rescore != "s_hat":
            given = sorted(n for n in DPO_S_HAT_ONLY if cfg.given(n))
            if given:
                raise OptionError(f"--model dpo model_arg(s) {', '.join(given)} only apply with rescore=s_hat "
                                  f"(rescore={self.rescore} retrieves no demos)")
            self.k = 0
            return
        self.instructions = instructions.load(cfg.instructions)
        self.setup_retrieval()

    @classmethod
    def merges(cls, cfg) -> bool:
        return cfg.rescore != "implicit"  # the implicit reward disables the adapter for π_ref

    def _make_scorer(self) -> Any:
        if self.rescore == "implicit":
            return implicit_reward_scorer(self.engine)
        if self.rescore == "s_hat":
            # Ŝ on the DPO policy; the candidates were sampled under the plain prompt, not under d+: no reuse
            return ContrastiveScorer(self.engine, "s_hat", score_eos=self.cfg.score_eos, empty=self.cfg.empty,
                                     reuse=False)
        return policy_scorer(self.engine)

    def demos_for(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[dict]]:
        return self.retrieve(task, prompts, exclude_self) if self.rescore == "s_hat" else [[] for _ in prompts]

    def contexts_of(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[str]]:
        if self.rescore != "s_hat":
            return super().contexts_of(task, prompts, exclude_self)
        tpl = self.template(task)
        return [[tpl.zero_shot(p), positive_context(p, d, tpl), negative_context(p, d, tpl)]
                for p, d in zip(prompts, self.retrieve(task, prompts, exclude_self))]

    def model_info(self) -> dict:
        info = super().model_info()
        if self.rescore == "s_hat":
            info.update(self.retrieval_info())
        return info

    def resolved(self) -> dict:
        out = {**super().resolved(), "n": self.n}
        return {**out, **self.retrieval_resolved()} if self.rescore == "s_hat" else out
