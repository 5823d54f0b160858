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
from icdpo_eval.config import names
from icdpo_eval.config.options import SFT_LORA
from icdpo_eval.engine import Engine
from icdpo_eval.errors import OptionError
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.scorers import LogProbScorer, zero_shot_term
from icdpo_eval.models.base import MethodLM


def adapter_base(adapter: str) -> tuple[str | None, str | None]:
    """(base recorded by ``icdpo-eval train``, base_model_name_or_path of adapter_config.json)."""
    cfg = Path(adapter) / "adapter_config.json"
    if not cfg.is_file():
        raise OptionError(f"model_arg adapter={adapter!r}: no adapter_config.json there; train one with "
                          "`icdpo-eval train sft|dpo --out DIR` (or pass a peft LoRA folder)")
    peft_base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    prov = Path(adapter) / PROVENANCE
    trained_base = json.loads(prov.read_text()).get("base") if prov.is_file() else None
    return trained_base, peft_base


def check_adapter(pretrained: str | None, adapter: str | None, method: str) -> str:
    """Validate ``adapter`` against ``pretrained``; the base model name to load."""
    if not adapter:
        raise OptionError(f"--model {method} needs model_arg adapter=DIR (or peft=DIR; a LoRA folder from "
                          f"`icdpo-eval train {'sft' if method == 'sft_lora' else 'dpo'} --out DIR`)")
    trained_base, peft_base = adapter_base(adapter)
    if pretrained is None:
        return names.canonical(trained_base or peft_base or names.BASE) or names.BASE
    found = {n for n in (trained_base, peft_base) if n}
    if not found or names.canonical(pretrained) in {names.canonical(n) for n in found}:
        return pretrained

    def real(name: str) -> str:
        try:
            path = names.resolve(name)
        except OptionError:
            return name
        return os.path.realpath(path) if os.path.exists(path) else path

    if real(pretrained) in {real(n) for n in found}:
        return pretrained
    raise OptionError(f"adapter {adapter} was trained on base {trained_base or peft_base!r}, not "
                      f"pretrained={pretrained!r}; drop pretrained= or pass the adapter's base model")


def policy_scorer(engine: Engine) -> LogProbScorer:
    """log π(y | x) under the engine's model (base + adapter), reusing the sampling pass's log-probs (the
    candidates were sampled under that same plain prompt); nothing to score = log 1 = 0."""
    return LogProbScorer(engine, zero_shot_term(reuse=True), zero_tokens=0.0)


class SFTLoRALM(MethodLM):
    """Base model + SFT LoRA adapter, one sample per prompt. Options: docs/options.md."""

    method = "sft_lora"
    OPTIONS = SFT_LORA

    @classmethod
    def weight_keys(cls, model_args, device=None) -> list[tuple]:
        cfg = cls.OPTIONS.parse(model_args)
        base = names.resolve(check_adapter(cfg.pretrained, cfg.adapter, cls.method))
        return [cls._engine_key(cfg, base, device, adapter=cfg.adapter, merge=cls.merges(cfg))]

    @classmethod
    def merges(cls, cfg) -> bool:
        """Whether the LoRA deltas are folded into the weights (same outputs, half the matmuls per step)."""
        return True

    def validate(self) -> None:
        self.adapter = self.cfg.adapter
        self.pretrained = names.canonical(check_adapter(self.cfg.pretrained, self.adapter, self.method))
        self.check_method_options()

    def load(self) -> None:
        self.load_engine(adapter=self.adapter, merge_adapter=self.merges(self.cfg))
        self.scorer = self._make_scorer()

    def check_method_options(self) -> None:
        """Subclasses validate their own options here (before any model loads)."""

    def _make_scorer(self) -> Any:
        return policy_scorer(self.engine)

    def _training(self) -> dict:
        prov = Path(str(self.adapter)) / PROVENANCE
        if not prov.is_file():
            return {}
        p = json.loads(prov.read_text())
        return {k: p.get(k) for k in ("method", "task", "demo_pool", "global_step", "final_loss", "lora")}

    def model_info(self) -> dict:
        return {"training": self._training(), "n": self.n}

    def resolved(self) -> dict:
        return {**super().resolved(), "training": self._training()}

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        prompts = [self.prepare(task, r.args[0]) for r in reqs]
        tpl = self.template(task)
        return sample_and_select(
            self.engine, self.scorer, prompts, [tpl.zero_shot(p) for p in prompts], self.demos_for(task, prompts),
            n=self.n, params=self.sampling_params(gk, task), select="score" if self.n > 1 else "single",
            seed=self.seed, empty=self.cfg["empty"] if "empty" in self.OPTIONS else "score", template=tpl,
            names=[f"{task} doc {r.doc_id}" for r in reqs], store=self.candidate_store(), stats=self.stats)
