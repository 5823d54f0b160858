"""``lm_eval --model sft_lora``: the SFT+LoRA baseline (base model + an adapter from ``icdpo-eval train sft``).

generate_until: ONE response per prompt, sampled from base + adapter under the plain prompt (the dialogue
ending in ``Assistant:``, as in training) with the task's top-p, cut at turn markers.
loglikelihood: the policy's log π(y | x).

The adapter folder must hold ``adapter_config.json`` (peft); its base model (``icdpo_train.json``'s ``base``,
else ``adapter_config.json``'s ``base_model_name_or_path``) must be ``pretrained`` when that is given, and
is the default when it is not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from icdpo_eval.baselines.train import PROVENANCE
from icdpo_eval.data import embedded
from icdpo_eval.engine import Engine
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.scorers import LogProbScorer, zero_shot_term
from icdpo_eval.models.args import as_batch_size, as_int
from icdpo_eval.models.base import MethodLM


def adapter_base(adapter: str) -> tuple[str | None, str | None]:
    """(base recorded by ``icdpo-eval train``, base_model_name_or_path of adapter_config.json)."""
    cfg = Path(adapter) / "adapter_config.json"
    if not cfg.is_file():
        raise ValueError(f"model_arg adapter={adapter!r}: no adapter_config.json there; train one with "
                         "`icdpo-eval train sft|dpo --out DIR` (or pass a peft LoRA folder)")
    peft_base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    prov = Path(adapter) / PROVENANCE
    trained_base = json.loads(prov.read_text()).get("base") if prov.is_file() else None
    return trained_base, peft_base


def check_adapter(pretrained: str | None, adapter: str | None, method: str) -> str:
    """Validate ``adapter`` against ``pretrained``; the base model name to load."""
    if not adapter:
        raise ValueError(f"--model {method} needs model_arg adapter=DIR (a LoRA folder from "
                         f"`icdpo-eval train {'sft' if method == 'sft_lora' else 'dpo'} --out DIR`)")
    trained_base, peft_base = adapter_base(adapter)
    if pretrained is None:
        return trained_base or peft_base or embedded.BASE_ALIAS
    names = {n for n in (trained_base, peft_base) if n}
    if not names or pretrained in names:
        return pretrained

    def real(name: str) -> str:
        try:
            path = embedded.resolve(name, embedded.BASE_ALIAS)
        except ValueError:
            return name
        return os.path.realpath(path) if os.path.exists(path) else path

    if real(pretrained) in {real(n) for n in names}:
        return pretrained
    raise ValueError(f"adapter {adapter} was trained on base {trained_base or peft_base!r}, not "
                     f"pretrained={pretrained!r}; drop pretrained= or pass the adapter's base model")


def policy_scorer(engine: Engine) -> LogProbScorer:
    """log π(y | x) under the engine's model (base + adapter), reusing the sampling pass's log-probs (the
    candidates were sampled under that same plain prompt); nothing to score = log 1 = 0."""
    return LogProbScorer(engine, zero_shot_term(reuse=True), zero_tokens=0.0)


class SFTLoRALM(MethodLM):
    """Base model + SFT LoRA adapter, one sample per prompt."""

    method = "sft_lora"

    def __init__(self, pretrained: str | None = None, adapter: str | None = None, preset: str = "paper",
                 top_p: float | str | None = None, top_k: int | str | None = None,
                 temperature: float | str | None = None, max_new_tokens: int | str | None = None,
                 seed: int | str = 1234, dtype: str = "auto", device: str | None = None,
                 batch_size: int | str = 1, max_length: int | str | None = None, **unknown: Any) -> None:
        super().__init__()
        self.take_common_args(unknown)
        self.adapter = adapter
        self.pretrained = check_adapter(pretrained, adapter, self.method)
        self.set_settings(preset)
        self._method_args()
        self.set_generation_args(top_p, temperature, max_new_tokens, top_k)
        self.seed = as_int("seed", seed)
        self.batch_size = as_batch_size(batch_size)
        self.load_engine(self.pretrained, device=device, dtype=dtype, max_length=max_length, adapter=adapter)
        if self._merge():
            # fold the LoRA deltas into the weights: same outputs, half the matmuls per decode step
            self.engine.model = self.engine.model.merge_and_unload().eval()
        self.scorer = self._make_scorer()

    def _method_args(self) -> None:
        """Subclasses validate their own model_args here (after the preset, before any model loads)."""

    def _merge(self) -> bool:
        return True

    def _make_scorer(self) -> Any:
        return policy_scorer(self.engine)
    def _training(self) -> dict:
        prov = Path(str(self.adapter)) / PROVENANCE
        if not prov.is_file():
            return {}
        p = json.loads(prov.read_text())
        return {k: p.get(k) for k in ("method", "task", "demo_pool", "global_step", "final_loss", "lora")}

    def get_model_info(self) -> dict:
        return {"method": self.method, "pretrained": self.pretrained, "adapter": self.adapter,
                "training": self._training(), "n": self.n, **self.sampling_info(), "seed": self.seed,
                "dtype": str(self.engine.model.dtype)}

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        prompts = [r.args[0] for r in reqs]
        tpl = self.template(task)
        choices = sample_and_select(
            self.engine, self.scorer, prompts, [tpl.zero_shot(p) for p in prompts], self.demos_for(task, prompts),
            n=self.n, params=self.sampling_params(gk), select="score" if self.n > 1 else "single", seed=self.seed,
            empty=self.settings.empty, legacy_postprocess=self.settings.postprocess == "legacy", template=tpl,
            names=[f"{task} doc {r.doc_id}" for r in reqs])
        return choices
