"""Tiny twins of the embedded models: the real configs and tokenizers, a few randomly initialised weights.

A twin has the architecture, tokenizer, chat template and generation config of its embedded model but two
layers and a hidden size of 64 (SBERT: 32), so it loads in a fraction of a second and a decode step costs
milliseconds. The Gemma-3 base twin keeps one sliding-window and one full-attention layer, with a window of
:data:`SLIDING_WINDOW` tokens, so the sliding path of the KV cache is exercised by any real prompt. Twins
produce gibberish: they test plumbing, equalities and bookkeeping (cached scores equal a plain forward pass,
every model kind through the CLI, leaderboards, resume), never a method's quality.

``icdpo-eval models twins DIR`` writes ``DIR/base``, ``DIR/teacher`` and ``DIR/sbert``;
``ICDPO_EMBEDDED_DIR=DIR`` (:mod:`icdpo_eval.config.settings`) makes the names ``embedded:base`` / ``teacher`` /
``sbert`` resolve to them (recorded in every run's results). The tests build them once per session.
Building needs the real embedded models' configs and tokenizers (converted once, cached); the weights are
seeded, so the same versions of torch and transformers build the same twins.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from icdpo_eval.runtime import atomic_write_dir

SLIDING_WINDOW = 16
SEED = 0
KINDS = ("base", "teacher", "sbert")
_DECODER = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 32}
_COPY_SKIP = {"model.safetensors", "pytorch_model.bin", "config.json"}


def _copy_files(src: Path, dst: Path) -> None:
    """Everything of ``src`` but its weights and config (tokenizer, chat template, generation config,
    sentence-transformers modules)."""
    for p in src.iterdir():
        if p.name in _COPY_SKIP or p.name.endswith(".lock"):
            continue
        if p.is_dir():
            shutil.copytree(p, dst / p.name)
        else:
            shutil.copy2(p, dst / p.name)


def _causal_twin(real: Path, dst: Path, overrides: dict) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(real)
    for k, v in {**_DECODER, **overrides}.items():
        setattr(config, k, v)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(dst)
    _copy_files(real, dst)
    if (real / "generation_config.json").is_file():  # the real generation config, not the one from_config made
        shutil.copy2(real / "generation_config.json", dst / "generation_config.json")


def _sbert_twin(real: Path, dst: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(real)
    for k, v in {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64,
                 "num_attention_heads": 2}.items():
        setattr(config, k, v)
    torch.manual_seed(SEED)
    AutoModel.from_config(config).save_pretrained(dst)
    _copy_files(real, dst)
    pooling = dst / "1_Pooling" / "config.json"
    if pooling.is_file():
        cfg = json.loads(pooling.read_text())
        cfg["word_embedding_dimension"] = config.hidden_size
        pooling.write_text(json.dumps(cfg, indent=2) + "\n")


def build(kind: str, real: Path, dst: Path) -> Path:
    """The twin of embedded model ``kind`` (base | teacher | sbert) whose real folder is ``real``, at ``dst``."""
    if kind == "base":
        n = _DECODER["num_hidden_layers"]
        overrides = {"layer_types": ["sliding_attention"] * (n - 1) + ["full_attention"],
                     "sliding_window": SLIDING_WINDOW, "query_pre_attn_scalar": _DECODER["head_dim"]}
        atomic_write_dir(dst, lambda tmp: _causal_twin(real, tmp, overrides))
    elif kind == "teacher":
        atomic_write_dir(dst, lambda tmp: _causal_twin(real, tmp, {}))
    elif kind == "sbert":
        atomic_write_dir(dst, lambda tmp: _sbert_twin(real, tmp))
    else:
        raise ValueError(f"unknown embedded model {kind!r}; one of {', '.join(KINDS)}")
    return dst


def build_all(root: Path, kinds: tuple[str, ...] = KINDS) -> Path:
    """``root/base``, ``root/teacher``, ``root/sbert`` (each built unless present); returns ``root``."""
    from icdpo_eval.data import embedded

    real = {"base": embedded.base_model_path, "teacher": embedded.teacher_model_path, "sbert": embedded.sbert_path}
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        if not (root / kind / "config.json").is_file():
            build(kind, real[kind](real=True), root / kind)
    return root
