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
from icdpo_eval.engine import Engine
from icdpo_eval.method.scorers import ContrastiveScorer, LogProbScorer, zero_shot_term
from icdpo_eval.models.args import as_int, choice
from icdpo_eval.models.base import DemoRetrieval

RESCORES = ("none", "implicit", "s_hat")


def implicit_reward_scorer(engine: Engine) -> LogProbScorer:
    """DPO's implicit reward log π_dpo(y | x) − log π_ref(y | x); π_ref is the engine's peft model with its
    adapter disabled, so policy and reference share one model and one engine code path (the samples'
    log-probs are the policy's: reused for the first term only)."""
    return LogProbScorer(engine, zero_shot_term(reuse=True), replace(zero_shot_term(), adapter_off=True),
                         zero_tokens=0.0)


class DPOLM(DemoRetrieval, SFTLoRALM):
    """Base model + DPO LoRA adapter; ``rescore`` none / implicit / s_hat (see the module docstring)."""

    method = "dpo"

    def __init__(self, pretrained: str | None = None, adapter: str | None = None, rescore: str = "none",
                 n: int | str = 3, k: int | str = 2, retriever: str = "random", demo_pool: str | None = None,
                 sbert: str | None = None, **common: Any) -> None:
        """``common``: the sft_lora model_args (preset, sampling, seed, dtype, device, batch_size, ...)."""
        self.rescore = choice("rescore", rescore, RESCORES)
        self.n = 1 if self.rescore == "none" else as_int("n", n, 1)
        self._retrieval_args = {"k": k, "retriever": retriever, "sbert": sbert, "demo_pool": demo_pool}
        super().__init__(pretrained, adapter, **common)

    def _method_args(self) -> None:
        self.setup_retrieval(**self._retrieval_args)  # needs the preset (its SBERT default)

    def _merge(self) -> bool:
        return self.rescore != "implicit"  # the implicit reward disables the adapter for π_ref

    def _make_scorer(self) -> Any:
        if self.rescore == "implicit":
            return implicit_reward_scorer(self.engine)
        if self.rescore == "s_hat":
            # Ŝ on the DPO policy; the candidates were sampled under the plain prompt, not under d+: no reuse
            return ContrastiveScorer(self.engine, "s_hat", score_eos=self.settings.score_eos,
                                     empty=self.settings.empty, reuse=False)
        return policy_scorer(self.engine)

    def demos_for(self, task: str | None, prompts: list[str], exclude_self: bool = False) -> list[list[dict]]:
        return self.retrieve(task, prompts, exclude_self) if self.rescore == "s_hat" else [[] for _ in prompts]

    def get_model_info(self) -> dict:
        info = {**super().get_model_info(), "rescore": self.rescore}
        if self.rescore == "s_hat":
            info.update(self.retrieval_info())
        return info
