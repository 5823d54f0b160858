"""``lm_eval --model w2s``: weak-to-strong search (Zhou et al., NeurIPS 2024) on the engine.

generate_until: chunk-level beam search over the frozen base model (``pretrained``), every partial response scored
by the guide's implicit reward ``log π_tuned(y | x) − log π_untuned(y | x)``
(:mod:`icdpo_eval.method.beam_search`; algorithm, settings and our choices: docs/w2s.md).
loglikelihood: the guide's implicit reward of the whole response (EOS appended), so the ``*_pairs`` tasks measure
the guide as a reward model.

The guide: ``tuned`` is a LoRA adapter folder (``icdpo-eval train dpo|sft``; ``trained:NAME`` in a leaderboard spec)
whose base is the untuned model (one model in memory, the adapter disabled for the untuned term), or a hub name /
local folder with ``untuned`` naming the other half. Every file is checked before any weights load.
"""

from __future__ import annotations

import os
from pathlib import Path

from icdpo_eval.baselines.sft_lora import adapter_base
from icdpo_eval.config import names
from icdpo_eval.config.options import W2S
from icdpo_eval.engine import Engine
from icdpo_eval.errors import OptionError
from icdpo_eval.method.beam_search import ImplicitReward, chunk_beam_search
from icdpo_eval.models.base import MethodLM


def is_adapter(path: str) -> bool:
    return (Path(os.path.expanduser(path)) / "adapter_config.json").is_file()


class WeakToStrongLM(MethodLM):
    """Weak-to-strong search over one base model and a tuned / untuned guide pair. Options: docs/options.md."""

    method = "w2s"
    OPTIONS = W2S

    @classmethod
    def guide_of(cls, cfg) -> tuple[str, str | None, str | None]:
        """(model to load for the tuned half, its adapter or None, the untuned model or None = adapter off), checked
        without loading weights: one line naming the option otherwise."""
        tuned, untuned = cfg.tuned, cfg.untuned
        if not tuned:
            raise OptionError("--model w2s needs model_arg tuned=ADAPTER_DIR (from `icdpo-eval train dpo --out DIR`) "
                              "or tuned=MODEL with untuned=MODEL: the guide pair of weak-to-strong search")
        if names.looks_local(tuned) and not Path(os.path.expanduser(tuned)).exists():
            raise OptionError(f"--model w2s model_arg tuned={tuned!r}: no such folder (a LoRA adapter folder from "
                              "`icdpo-eval train dpo --out DIR`, or a model folder)")
        if is_adapter(tuned):
            trained_base, peft_base = adapter_base(tuned)
            base = names.canonical(trained_base or peft_base or names.BASE) or names.BASE
            if untuned is None or names.canonical(untuned) == base:
                return base, tuned, None
            return base, tuned, untuned  # untuned= was checked as a model name by its declaration
        if untuned is None:
            raise OptionError(f"--model w2s model_arg tuned={tuned!r} is not a LoRA adapter folder "
                              "(adapter_config.json): a full tuned model needs its untuned half, untuned=MODEL")
        names.check_model_name("--model w2s model_arg tuned", tuned)  # a missing folder: one line naming it
        return tuned, None, untuned

    @classmethod
    def weight_keys(cls, model_args, device=None) -> list[tuple]:
        cfg = cls.OPTIONS.parse(model_args)
        base = cls._engine_key(cfg, names.resolve(cfg.pretrained), device)
        tuned, adapter, untuned = cls.guide_of(cfg)
        keys = [base, cls._engine_key(cfg, names.resolve(tuned), device, adapter=adapter)]
        if untuned is not None:
            keys.append(cls._engine_key(cfg, names.resolve(untuned), device))
        return keys

    def validate(self) -> None:
        self.guide_names = self.guide_of(self.cfg)

    def _guide_engine(self, name: str, adapter: str | None = None) -> Engine:
        cfg = self.cfg
        return Engine.load(names.resolve(name), device=str(self.engine.device), dtype=cfg.dtype, revision=None,
                           trust_remote_code=cfg.trust_remote_code, adapter=adapter,
                           max_rows=max(24, cfg.beam_width * cfg.successors), kernels=cfg.decode_kernels)

    def load(self) -> None:
        self.load_engine()
        tuned, adapter, untuned = self.guide_names
        tuned_engine = self._guide_engine(tuned, adapter)
        self.scorer = ImplicitReward(tuned_engine, self._guide_engine(untuned) if untuned else None)

    def model_info(self) -> dict:
        tuned, adapter, untuned = self.guide_names
        return {"guide": {"tuned": adapter or tuned, "untuned": untuned or f"{tuned} (the adapter disabled)"}}

    def resolved(self) -> dict:
        return {**super().resolved(), "guide": [names.resolve(n) if n else None for n in self.guide_names]}

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list:
        params, tpl, cfg = self.sampling_params(gk, task), self.template(task), self.cfg
        out = []
        for r in reqs:
            prompt = self.prepare(task, r.args[0])
            out.append(chunk_beam_search(self.engine, self.scorer, prompt, tpl.zero_shot(prompt), params=params,
                                         beam_width=cfg.beam_width, successors=cfg.successors,
                                         chunk_length=cfg.chunk_length, seed=self.seed, template=tpl))
        return out
