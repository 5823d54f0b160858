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

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from icdpo_eval.baselines._common import BaselineLM, DemoRetrieval, as_int, check_unknown, choice
from icdpo_eval.baselines.sft_lora import PolicyScorer, SFTLoRALM
from icdpo_eval.engine import Engine
from icdpo_eval.method.scorers import Candidate, ContrastiveScorer

RESCORES = ("none", "implicit", "s_hat")


class ImplicitRewardScorer:
    """DPO implicit reward log π_dpo(y | x) − log π_ref(y | x); π_ref is the engine's peft model with its
    adapter disabled, so policy and reference share one model and one engine code path."""

    def __init__(self, engine: Engine) -> None:
        if not hasattr(engine.model, "disable_adapter"):
            raise ValueError("the implicit reward needs a peft model (base + adapter) to disable the adapter of")
        self.engine = engine
        self.policy = PolicyScorer(engine)

    def score(self, groups: Sequence[Sequence[Candidate]]) -> list[list[float]]:
        pol = self.policy.score(groups)
        with self.engine.model.disable_adapter():
            # the samples' log-probs are the policy's: never reuse them for the reference
            ref = self.policy.score([[replace(c, sample=None) for c in g] for g in groups])
        return [[p - r for p, r in zip(pr, rr)] for pr, rr in zip(pol, ref)]


class PolicySHatScorer:
    """Ŝ (``ContrastiveScorer(engine, "s_hat")``) on the DPO policy. The candidates were sampled under the
    plain prompt, not under d+, so their sampling log-probs are dropped; candidates without demos (the
    loglikelihood path) get them from ``retrieve(prompts)``."""

    def __init__(self, engine: Engine, retrieve: Callable[[list[str]], list[list[dict]]], *,
                 score_eos: bool = True, empty: str = "score") -> None:
        self.inner = ContrastiveScorer(engine, "s_hat", score_eos=score_eos, empty=empty)
        self.retrieve = retrieve

    def score(self, groups: Sequence[Sequence[Candidate]]) -> list[list[float]]:
        missing = [gi for gi, g in enumerate(groups) if g and not g[0].demos]
        found = dict(zip(missing, self.retrieve([groups[gi][0].prompt for gi in missing]))) if missing else {}
        return self.inner.score([[replace(c, sample=None, demos=found.get(gi, c.demos)) for c in g]
                                 for gi, g in enumerate(groups)])


class DPOLM(DemoRetrieval, SFTLoRALM):
    """Base model + DPO LoRA adapter; ``rescore`` none / implicit / s_hat (see the module docstring)."""

    method = "dpo"

    def __init__(self, pretrained: str | None = None, adapter: str | None = None, rescore: str = "none",
                 n: int | str = 3, k: int | str = 2, retriever: str = "random", demo_pool: str | None = None,
                 sbert: str | None = None, preset: str = "paper", top_p: float | str | None = None,
                 top_k: int | str | None = None, temperature: float | str | None = None,
                 max_new_tokens: int | str | None = None, seed: int | str = 1234, dtype: str = "auto",
                 device: str | None = None, batch_size: int | str = 1, max_length: int | str | None = None,
                 **unknown: Any) -> None:
        BaselineLM.__init__(self)
        check_unknown(self.method, unknown)
        self.rescore = choice("rescore", rescore, RESCORES)
        self.set_settings(preset)
        self.setup_retrieval(k=k, retriever=retriever, sbert=sbert, demo_pool=demo_pool)
        self._setup(pretrained=pretrained, adapter=adapter, preset=preset, top_p=top_p, top_k=top_k,
                    temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, dtype=dtype, device=device,
                    batch_size=batch_size, max_length=max_length,
                    n=1 if self.rescore == "none" else as_int("n", n, 1))

    def _merge(self) -> bool:
        return self.rescore != "implicit"  # the implicit reward disables the adapter for π_ref

    def _make_scorer(self) -> Any:
        if self.rescore == "implicit":
            return ImplicitRewardScorer(self.engine)
        if self.rescore == "s_hat":
            return PolicySHatScorer(self.engine, lambda prompts: self.retrieve(None, prompts),
                                    score_eos=self.settings.score_eos, empty=self.settings.empty)
        return PolicyScorer(self.engine)

    def demos_for(self, task: str | None, prompts: list[str]) -> list[list[dict]]:
        return self.retrieve(task, prompts) if self.rescore == "s_hat" else [[] for _ in prompts]

    def get_model_info(self) -> dict:
        info = {**super().get_model_info(), "rescore": self.rescore}
        if self.rescore == "s_hat":
            info.update(self.retrieval_info())
        return info
