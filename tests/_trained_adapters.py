"""Tiny SFT and DPO LoRA adapters, trained ONCE per test session (used by test_sft_dpo_models.py): 16 short pairs
of the vendored pool, rank 4, 2 steps of batch 2, on the tiny twin of the embedded teacher (:data:`BASE`; the
adapters' own base, which ``--model sft_lora`` / ``dpo`` load). The teacher's 49k-token vocabulary, not Gemma's 262k,
keeps training cheap: TRL's dataset preparation hashes the tokenizer on every map."""

from __future__ import annotations

import json
from pathlib import Path

TINY = dict(rank=4, alpha=16, lr=1e-3, max_steps=2, batch_size=2, max_length=128, save_steps=1, logging_steps=1)
BASE = "embedded:teacher"
_CACHE: dict[str | None, dict[str, Path]] = {}  # identity of BASE as it resolves (None: the real model) -> adapters


def short_pool(path: Path, n: int = 16) -> Path:
    from icdpo_eval.data import datasets as data

    rows = sorted(data.demo_pool(None, "hh_harmless_mini"),
                  key=lambda r: (len(r["prompt"]) + len(r["chosen"]) + len(r["rejected"]), r["id"]))[:n]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def trained(tmp_path_factory) -> dict[str, Path]:
    """{"sft": DIR, "dpo": DIR, "pool": FILE} (trained on :data:`BASE` on first use in this process)."""
    from icdpo_eval.data.embedded import identity

    key = identity("teacher")
    if key not in _CACHE:
        from icdpo_eval.baselines.train import train_dpo, train_sft

        root = tmp_path_factory.mktemp("adapters")
        pool = short_pool(root / "pool16.jsonl")
        train_sft(str(root / "sft"), base=BASE, demo_pool=str(pool), task="hh_harmless_mini", **TINY)
        train_dpo(str(root / "dpo"), base=BASE, demo_pool=str(pool), task="hh_harmless_mini", **TINY)
        _CACHE[key] = dict(sft=root / "sft", dpo=root / "dpo", pool=pool)
    return _CACHE[key]
