"""TRL + peft training of the SFT+LoRA and DPO+LoRA baselines (``icdpo-eval train sft|dpo``).

* **SFT**: :class:`trl.SFTTrainer` on prompt-completion rows ``{prompt, completion=" " + chosen}``, so the
  loss covers the completion (and the EOS TRL appends) only; the prompt is the raw dialogue ending in
  ``Assistant:``, exactly what the ``sft_lora`` / ``dpo`` wrappers sample under.
* **DPO**: :class:`trl.DPOTrainer` on ``{prompt, chosen, rejected}`` with a LoRA ``peft_config`` and no
  ``ref_model``: TRL computes the reference log-probs with the adapter disabled, i.e. the base is the
  implicit reference.

Training data: by default (``--task hh``) the paper's mixed pool, "We mix the data of two domains for
training, while separately evaluating each method" (Appendix A): the ``hh_harmless`` default pool
(HH-RLHF harmless-base train) followed by the ``hh_helpful`` one (helpful-base train), a deterministic
union that the trainer shuffles with ``--seed``. A single task (``--task hh_harmless``,
``hh_harmless_mini``...) trains on its demo pool alone (:func:`icdpo_eval.data.demo_pool`), and
``--demo-pool`` replaces the pool. Checkpoints go to ``OUT/checkpoint-<step>`` (``--save-steps``);
``--resume`` continues from the last one (optimizer, scheduler, RNG and data position restored).
The final adapter (``adapter_config.json``,
``adapter_model.safetensors``) is saved in ``OUT`` with ``icdpo_train.json``: base, task, the pool(s) and
their pair counts, arguments, steps and losses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icdpo_eval.config import declared, names
from icdpo_eval.config.declared import opt, required
from icdpo_eval.data import datasets as data
from icdpo_eval.errors import UserError
from icdpo_eval.method.prompts import as_continuation

log = logging.getLogger(__name__)

METHODS = ("sft", "dpo")
PROVENANCE = "icdpo_train.json"
# LoRA on the attention projections (Hu et al. 2022; the usual setting of LoRA baselines)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-5}
# training "tasks" that stand for several tasks' default pools, concatenated in this order
MIXED_POOLS: dict[str, tuple[str, ...]] = {"hh": ("hh_harmless", "hh_helpful")}
DEFAULT_TASK = "hh"
SHOWN = {"lr": "sft 2e-4, dpo 5e-5"}  # defaults as the docs show them, where the value (None) would mislead


class TrainError(UserError):
    """A bad training request (task, pool, output folder...)."""


@dataclass
class TrainOptions:
    """Every option of ``icdpo-eval train``, declared once: this dataclass is the CLI (through transformers'
    ``HfArgumentParser``: ``--max-steps`` and ``--max_steps`` alike), its validation (``__post_init__``) and, with
    the method, the leaderboard spec's ``adapters:`` entries."""

    out: str = required("folder for checkpoints and the final adapter")
    base: str = opt(names.BASE, "base model: hub name, folder or embedded:base (%(default)s)")
    task: str = opt(DEFAULT_TASK, "training data: hh (default, the paper's mix: hh_harmless + hh_helpful default "
                     "pools) or one task's demo pool (a task with a default pool)")
    demo_pool: str | None = opt(None, "training pairs instead of the task's pool: JSONL or dataset:subset:split")
    rank: int = opt(8, "LoRA rank (%(default)s)")
    alpha: int = opt(16, "LoRA alpha (%(default)s)")
    dropout: float = opt(0.05, "LoRA dropout (%(default)s)")
    targets: list[str] = opt(lambda: list(LORA_TARGETS), "modules LoRA adapts (%(default)s)")
    lr: float | None = opt(None, "AdamW learning rate, cosine schedule (3% warm-up when training by epochs); default: "
                            "sft 2e-4, dpo 5e-5")
    epochs: float = opt(1.0, "epochs (%(default)s)")
    max_steps: int = opt(-1, "stop after N optimizer steps (overrides --epochs; -1: epochs decide)")
    batch_size: int = opt(4, "pairs per device step (%(default)s)")
    grad_accum: int = opt(1, "gradient accumulation (%(default)s)")
    max_pairs: int | None = opt(None, "train on the first N pairs of the pool (of a mixed pool: an equal share "
                                 "of each)")
    max_length: int = opt(512, "max prompt + response tokens (%(default)s; the paper's filters: 320 + 128)")
    beta: float = opt(0.1, "DPO beta (%(default)s; DPO only)")
    save_steps: int = opt(50, "checkpoint every N steps (%(default)s; OUT/checkpoint-N, the last 2 kept)")
    logging_steps: int = opt(1, "log the loss every N steps (%(default)s)")
    seed: int = opt(1234, "seed of the shuffle, LoRA init and dropout (%(default)s)")
    resume: bool = opt(False, "continue from the last checkpoint in --out (optimizer, schedule, RNG and data "
                        "position restored); without it an existing run in --out is an error")

    def __post_init__(self) -> None:
        for name, lo in (("rank", 1), ("alpha", 1), ("batch_size", 1), ("grad_accum", 1), ("max_length", 16),
                         ("save_steps", 1), ("logging_steps", 1), ("seed", 0)):
            if getattr(self, name) < lo:
                raise TrainError(f"--{name.replace('_', '-')} must be >= {lo} (got {getattr(self, name)})")
        if not 0.0 <= self.dropout < 1.0:
            raise TrainError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise TrainError(f"--max-pairs must be >= 1 (got {self.max_pairs})")
        if self.lr is not None and self.lr <= 0:
            raise TrainError(f"--lr must be > 0 (got {self.lr})")
        if self.epochs <= 0 and self.max_steps < 1:
            raise TrainError(f"--epochs must be > 0 unless --max-steps is given (got {self.epochs})")


@dataclass
class TrainArgs(TrainOptions):
    """One training run: the method (sft | dpo) and its :class:`TrainOptions`."""

    method: str = "sft"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrainError(f"method {self.method!r} is not one of: {', '.join(METHODS)}")
        super().__post_init__()


def options_table() -> str:
    """docs/training.md's table of the options, from :class:`TrainOptions` (``scripts/sync_docs.py`` writes it)."""
    return declared.options_table(TrainOptions, SHOWN)


def train_sft(out: str, **kwargs: Any) -> dict:
    """Train an SFT LoRA adapter into ``out``; returns the provenance dict (also in ``out/icdpo_train.json``)."""
    return train(TrainArgs(method="sft", out=out, **kwargs))


def train_dpo(out: str, **kwargs: Any) -> dict:
    """Train a DPO LoRA adapter into ``out`` (base = implicit reference); returns the provenance dict."""
    return train(TrainArgs(method="dpo", out=out, **kwargs))


def task_choices() -> list[str]:
    """Valid ``--task`` values: the mixed pools (``hh``), then every task with a default pool."""
    return [*MIXED_POOLS, *data.TASK_DEFAULTS]


def _rows(a: TrainArgs) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The training pairs and, for the provenance, where they come from (``[{"pool", "pairs"}]``).

    ``--demo-pool`` wins; else a mixed task (``hh``) concatenates its tasks' default pools in order
    (harmless rows, then helpful rows; the trainer shuffles them with its seed), else the task's own
    default pool. ``--max-pairs N`` keeps the first N rows of a single pool; of a mixed pool it keeps
    an equal share of each (the first ceil(N/k) of the first pool...), so the mix survives the cut.
    """
    if a.demo_pool is not None:
        sources = [(a.demo_pool, a.demo_pool, a.task)]
    elif a.task in MIXED_POOLS:
        sources = [(f"{t} default", None, t) for t in MIXED_POOLS[a.task]]
    elif a.task in data.TASK_DEFAULTS:
        sources = [(f"{a.task} default", None, a.task)]
    else:
        raise TrainError(f"--task {a.task!r} is not one of: {', '.join(task_choices())} "
                         "(or pass --demo-pool FILE.jsonl|dataset:subset:split)")
    k = len(sources)
    rows: list[dict[str, str]] = []
    pools: list[dict[str, Any]] = []
    for i, (label, spec, task) in enumerate(sources):
        share = None if a.max_pairs is None else a.max_pairs // k + (i < a.max_pairs % k)
        part = data.demo_pool(spec, task)[:share]
        rows += part
        pools.append({"pool": label, "pairs": len(part)})
    if not rows:
        raise TrainError(f"the training pool for task {a.task!r} ({a.demo_pool or 'task default'}) is empty")
    return rows, pools


def _check_out(out: Path, resume: bool) -> str | None:
    """Create/verify the output folder; the last checkpoint to resume from (None: start fresh)."""
    from transformers.trainer_utils import get_last_checkpoint

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".icdpo_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise TrainError(f"--out {out} is not a writable folder ({exc.strerror or exc})") from None
    last = get_last_checkpoint(str(out))
    if resume:
        if last is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", out)
        return last
    if last is not None or (out / PROVENANCE).exists():
        raise TrainError(f"--out {out} already holds a training run; pass --resume to continue it "
                         "or choose another folder")
    return None


def _fit(rows: list[dict[str, str]], tok: Any, max_length: int) -> tuple[list[dict[str, str]], int]:
    """The pairs whose prompt leaves room for a response within ``--max-length`` tokens (TRL would drop the others
    silently as "fully truncated"; here they are counted, and none left is an error)."""
    lengths = [len(ids) for ids in tok([r["prompt"] for r in rows])["input_ids"]]
    kept = [r for r, n in zip(rows, lengths) if n < max_length]
    over = len(rows) - len(kept)
    if not kept:
        raise TrainError(f"every one of the {len(rows)} training pairs has a prompt of at least --max-length "
                         f"{max_length} tokens (shortest: {min(lengths)}); raise --max-length")
    if over:
        log.warning("%d of %d training pairs dropped: prompt of --max-length %d tokens or more", over, len(rows),
                    max_length)
    return kept, over


def _dataset(method: str, rows: list[dict[str, str]]):
    from datasets import Dataset

    if method == "sft":
        return Dataset.from_list([{"prompt": r["prompt"], "completion": as_continuation(r["chosen"])} for r in rows])
    return Dataset.from_list([{"prompt": r["prompt"], "chosen": as_continuation(r["chosen"]),
                               "rejected": as_continuation(r["rejected"])} for r in rows])


def train(a: TrainArgs) -> dict:
    out = Path(a.out)
    rows, pools = _rows(a)
    last = _check_out(out, a.resume)

    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    lr = a.lr if a.lr is not None else DEFAULT_LR[a.method]
    base_path = names.resolve(a.base)
    tok = AutoTokenizer.from_pretrained(base_path)
    rows, over = _fit(rows, tok, a.max_length)
    # fp32 weights; on a bf16-capable GPU the trainer autocasts (mixed precision), never on CPU
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    peft_config = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=list(a.targets),
                             bias="none", task_type="CAUSAL_LM")
    common = dict(output_dir=str(out), learning_rate=lr, num_train_epochs=a.epochs, max_steps=a.max_steps,
                  per_device_train_batch_size=a.batch_size, gradient_accumulation_steps=a.grad_accum,
                  max_length=a.max_length, save_strategy="steps", save_steps=a.save_steps, save_total_limit=2,
                  logging_steps=a.logging_steps, seed=a.seed, data_seed=a.seed, report_to="none", bf16=bf16,
                  fp16=False, use_cpu=not cuda, gradient_checkpointing=False, dataloader_num_workers=0,
                  lr_scheduler_type="cosine", warmup_steps=0.03 if a.max_steps < 0 else 0)
    dataset = _dataset(a.method, rows)
    if a.method == "sft":
        from trl import SFTConfig, SFTTrainer

        cfg = SFTConfig(**common, completion_only_loss=True)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=dataset, processing_class=tok,
                             peft_config=peft_config)
    else:
        from trl import DPOConfig, DPOTrainer

        cfg = DPOConfig(**common, beta=a.beta)
        trainer = DPOTrainer(model=model, args=cfg, train_dataset=dataset, processing_class=tok,
                             peft_config=peft_config)
    start_step = 0
    if last is not None:
        start_step = json.loads((Path(last) / "trainer_state.json").read_text()).get("global_step", 0)
        log.warning("resuming from %s (step %d)", last, start_step)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    wall = time.perf_counter() - t0
    trainer.save_model(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    prov = {
        "method": a.method,
        "base": a.base,
        "base_path": base_path,
        "task": a.task,
        "demo_pool": " + ".join(p["pool"] for p in pools),
        "pools": pools,
        "pairs": len(rows),
        "dropped_over_max_length": over,
        "args": {**asdict(a), "lr": lr},
        "lora": {"r": a.rank, "alpha": a.alpha, "dropout": a.dropout, "target_modules": list(a.targets)},
        "global_step": trainer.state.global_step,
        "resumed_from": last,
        "start_step": start_step,
        "train_loss": result.training_loss,
        "final_loss": losses[-1] if losses else None,
        "train_seconds": round(wall, 2),
        "device": "cuda" if cuda else "cpu",
        "precision": "bf16 mixed" if bf16 else "fp32",
    }
    (out / PROVENANCE).write_text(json.dumps(prov, indent=2) + "\n")
    return prov


# ---------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` (``train sft|dpo ...``) to an argparse subparsers object: the method, then every field of
    :class:`TrainOptions` (:mod:`icdpo_eval.config.declared`)."""
    p = declared.add_parser(subparsers, "train", TrainOptions, description=__doc__,
                            help="train SFT+LoRA / DPO+LoRA adapters with TRL + peft")
    p.add_argument("method", choices=METHODS, help="sft (SFTTrainer on prompt+chosen) or dpo (DPOTrainer)")
    return p


def main(args: argparse.Namespace) -> int:
    prov = train(declared.from_args(TrainArgs, args))  # errors: one line from icdpo_eval.cli
    print(f"{args.method} adapter saved in {args.out} (step {prov['global_step']}, final loss "
          f"{prov['final_loss']}, {prov['train_seconds']} s); evaluate it with:\n"
          f"  lm_eval --model {'sft_lora' if args.method == 'sft' else 'dpo'} "
          f"--model_args adapter={os.path.abspath(args.out)} --tasks hh_harmless_mini")
    return 0
