"""``icdpo-eval train sft|dpo``: argument errors, adapters that change the model, provenance, resume."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest
from _trained_adapters import TINY

from icdpo_eval import cli
from icdpo_eval.baselines import train as tr

X = "\n\nHuman: How can I make my neighbour's dog stop barking?\n\nAssistant:"
Y = " Talk to your neighbour politely about it."


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="icdpo-eval")
    tr.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_parser_defaults():
    a = parse(["dpo", "--out", "x"])
    assert (a.method, a.base, a.task, a.rank, a.alpha, a.lr, a.epochs, a.max_steps, a.resume) == (
        "dpo", "embedded:base", "hh", 8, 16, None, 1.0, -1, False)
    assert tr.DEFAULT_LR == {"sft": 2e-4, "dpo": 5e-5}


def test_one_declaration_is_the_cli_and_the_checks():
    """Every TrainOptions field is a flag (both spellings), with the dataclass's default; the same checks run for
    the CLI and for a leaderboard spec's adapters."""
    from dataclasses import MISSING, fields

    a = parse(["sft", "--out", "x", "--max-steps", "3", "--grad_accum", "2", "--targets", "q_proj", "v_proj"])
    assert (a.max_steps, a.grad_accum, a.targets) == (3, 2, ["q_proj", "v_proj"])
    d = parse(["sft", "--out", "x"])
    for f in fields(tr.TrainOptions):
        if f.name == "out":
            continue
        want = f.default_factory() if f.default is MISSING else f.default
        assert getattr(d, f.name) == want, f.name
    with pytest.raises(tr.TrainError, match="--rank must be >= 1"):
        tr.TrainArgs(method="dpo", out="x", rank=0)


@pytest.mark.parametrize("extra,match", [
    (["--task", "hh_nope"], "--task 'hh_nope' is not one of: hh, hh_harmless, hh_helpful"),
    (["--demo-pool", "EMPTY"], "training pool .* is empty"),
    (["--out", "FILE/sub"], "is not a writable folder"),
    (["--rank", "0"], "--rank must be >= 1"),
    (["--dropout", "1.5"], r"--dropout must be in \[0, 1\)"),
    (["--max_pairs", "0"], "--max-pairs must be >= 1"),
])
def test_clear_errors(tmp_path, capsys, extra, match):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "file").write_text("")
    argv = ["sft", "--out", str(tmp_path / "out"), "--task", "hh_harmless_mini"]
    argv += [x.replace("EMPTY", str(tmp_path / "empty.jsonl")).replace("FILE", str(tmp_path / "file")) for x in extra]
    assert cli.main(["train", *argv]) == 2  # as a user runs it: the CLI prints the one-line error
    err = capsys.readouterr().err
    assert err.startswith("icdpo-eval train: error:")
    assert __import__("re").search(match, err), err


def test_existing_run_needs_resume(tmp_path, capsys):
    (tmp_path / "icdpo_train.json").write_text("{}")
    assert cli.main(["train", "dpo", "--out", str(tmp_path), "--task", "hh_harmless_mini"]) == 2
    assert "pass --resume" in capsys.readouterr().err


def _fake_pools(monkeypatch) -> list[tuple[str | None, str]]:
    """Replace data.demo_pool by 3 tagged rows per task (no hub); returns the calls made."""
    calls: list[tuple[str | None, str]] = []

    def fake(spec, task):
        calls.append((spec, task))
        return [{"prompt": X, "chosen": f"{task} c{i}", "rejected": "r", "id": f"{task}/{i}"} for i in range(3)]

    monkeypatch.setattr(tr.data, "demo_pool", fake)
    return calls


def test_default_task_is_the_mixed_hh_pool(monkeypatch):
    calls = _fake_pools(monkeypatch)
    rows, pools = tr._rows(tr.TrainArgs(method="dpo", out="x"))
    # harmless rows then helpful rows, in pool order (the trainer shuffles them)
    assert [r["id"] for r in rows] == [f"hh_harmless/{i}" for i in range(3)] + [f"hh_helpful/{i}" for i in range(3)]
    assert calls == [(None, "hh_harmless"), (None, "hh_helpful")]
    assert pools == [{"pool": "hh_harmless default", "pairs": 3}, {"pool": "hh_helpful default", "pairs": 3}]
    assert parse(["sft", "--out", "x"]).task == "hh"
    # --max-pairs keeps an equal share of each pool, so the mix survives the cut
    rows, pools = tr._rows(tr.TrainArgs(method="dpo", out="x", max_pairs=3))
    assert [r["id"] for r in rows] == ["hh_harmless/0", "hh_harmless/1", "hh_helpful/0"]
    assert [p["pairs"] for p in pools] == [2, 1]


def test_single_task_keeps_one_pool(monkeypatch):
    calls = _fake_pools(monkeypatch)
    rows, pools = tr._rows(tr.TrainArgs(method="sft", out="x", task="hh_harmless_mini", max_pairs=2))
    assert [r["id"] for r in rows] == ["hh_harmless_mini/0", "hh_harmless_mini/1"]
    assert calls == [(None, "hh_harmless_mini")] and pools == [{"pool": "hh_harmless_mini default", "pairs": 2}]
    rows, pools = tr._rows(tr.TrainArgs(method="sft", out="x", task="hh", demo_pool="my.jsonl"))
    assert calls[-1] == ("my.jsonl", "hh") and len(rows) == 3 and pools == [{"pool": "my.jsonl", "pairs": 3}]


class _WordTokenizer:
    def __call__(self, texts: list[str]) -> dict:
        return {"input_ids": [t.split() for t in texts]}


def test_pairs_over_max_length_are_counted_and_none_left_is_an_error():
    rows = [{"prompt": "a b c", "chosen": "x", "rejected": "y"}, {"prompt": "a", "chosen": "x", "rejected": "y"}]
    kept, over = tr._fit(rows, _WordTokenizer(), 3)
    assert kept == rows[1:] and over == 1
    with pytest.raises(tr.TrainError, match="--max-length 1 tokens .shortest: 1."):
        tr._fit(rows, _WordTokenizer(), 1)


def test_dataset_formats():
    rows = [{"prompt": X, "chosen": "Talk to them.", "rejected": "Poison it.", "id": "a"}]
    sft = tr._dataset("sft", rows)[0]
    dpo = tr._dataset("dpo", rows)[0]
    # prompt-completion (loss on the completion only), the completion as it follows "Assistant:" at inference
    assert sft == {"prompt": X, "completion": " Talk to them."}
    assert dpo == {"prompt": X, "chosen": " Talk to them.", "rejected": " Poison it."}


# the tiny twin of the embedded teacher (SmolLM2: a 49k-token vocabulary): a training run takes seconds, where the
# Gemma-3 twin's 262k-token tokenizer costs ~30 s per run in the trainers' tokenizer loads and dataset hashing
BASE = "embedded:teacher"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, twins_dir) -> dict:
    """{"sft": DIR, "dpo": DIR, "pool": FILE}: TINY adapters (2 steps of batch 2, a checkpoint per step) trained
    once for this module on the teacher's twin."""
    from _trained_adapters import short_pool

    root = tmp_path_factory.mktemp("train")
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse twin setting is not applied yet
        mp.setenv("ICDPO_EMBEDDED_DIR", str(twins_dir))
        pool = short_pool(root / "pool16.jsonl")
        tr.train_sft(str(root / "sft"), base=BASE, demo_pool=str(pool), task="hh_harmless_mini", **TINY)
        tr.train_dpo(str(root / "dpo"), base=BASE, demo_pool=str(pool), task="hh_harmless_mini", **TINY)
    return {"sft": root / "sft", "dpo": root / "dpo", "pool": pool}


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_adapter_is_saved_and_changes_the_model(adapters, twins_dir, method):
    from icdpo_eval.engine import Engine

    out = adapters[method]
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    prov = json.loads((out / "icdpo_train.json").read_text())
    assert prov["method"] == method and prov["base"] == BASE and prov["pairs"] == 16
    assert Path(prov["base_path"]) == twins_dir / "teacher"  # the twin, not the real model
    assert prov["global_step"] == 2
    log = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in log if "loss" in h]
    assert len(losses) == 2 and prov["final_loss"] == losses[-1]
    assert all(math.isfinite(x) and x > 0 for x in losses), losses
    base = Engine.load(prov["base_path"], device="cpu", dtype="float32")
    if method == "dpo":
        # step 1 is computed before any update, and LoRA's B starts at zero: the policy equals the reference,
        # so the (sigmoid) DPO loss is -log sigmoid(0) = log 2 exactly
        assert losses[0] == pytest.approx(math.log(2), abs=1e-3)
    else:  # the base model's mean token NLL of the completions, in nats: a random twin is all but a uniform guess
        # over its vocabulary (a sum over tokens, or bits, would be far off; the trained model does better)
        assert losses[0] == pytest.approx(math.log(len(base.tok)), abs=0.1)
    assert prov["lora"]["target_modules"] == list(tr.LORA_TARGETS) and prov["lora"]["r"] == 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    eng = Engine.load(prov["base_path"], device="cpu", dtype="float32", adapter=str(out))
    tuned = eng.logprob_full_forward(X, Y)
    assert abs(tuned - base.logprob_full_forward(X, Y)) > 1e-3


def test_resume_continues_from_last_checkpoint(adapters, tmp_path):
    out = tmp_path / "dpo"
    shutil.copytree(adapters["dpo"], out)
    first = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    prov = tr.train_dpo(str(out), base=BASE, demo_pool=str(adapters["pool"]), task="hh_harmless_mini",
                        **{**TINY, "max_steps": 3, "resume": True})
    assert prov["start_step"] == 2 and prov["global_step"] == 3 and prov["resumed_from"].endswith("checkpoint-2")
    hist = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    losses = [h["loss"] for h in hist if "loss" in h]
    # steps 1-2 restored from the checkpoint (not re-run), one new step
    assert len(losses) == 3 and losses[:2] == [h["loss"] for h in first if "loss" in h]
