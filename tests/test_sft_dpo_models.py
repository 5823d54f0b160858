"""``--model sft_lora`` / ``--model dpo``: adapter checks, the implicit reward, and the stock lm_eval CLI.

The adapters are trained (2 steps, ``tests/_trained_adapters.py``) on the tiny twin of the embedded teacher, their
base: what is checked is plumbing and an equality with plain forward passes, which random weights exercise as well."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _inproc import lm_eval
from _rm_checks import check_rm_reward, rm_items
from _trained_adapters import BASE, trained

from icdpo_eval.baselines.dpo import DPOLM
from icdpo_eval.baselines.sft_lora import SFTLoRALM
from icdpo_eval.method.scorers import Candidate

X = "\n\nHuman: How do I bake bread at home?\n\nAssistant:"
YS = [" Mix flour, water, salt and yeast, then bake it.", " I don't know."]


def fake_adapter(path: Path, peft_base: str, trained_base: str | None) -> str:
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": peft_base}))
    if trained_base:
        (path / "icdpo_train.json").write_text(json.dumps({"base": trained_base}))
    return str(path)


def test_missing_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs model_arg adapter=DIR .*icdpo-eval train sft"):
        SFTLoRALM()
    with pytest.raises(ValueError, match="needs model_arg adapter=DIR .*icdpo-eval train dpo"):
        DPOLM(rescore="implicit")
    with pytest.raises(ValueError, match="no adapter_config.json there"):
        DPOLM(adapter=str(tmp_path))


def test_mismatched_base_is_a_clear_error(tmp_path):
    ad = fake_adapter(tmp_path / "a", "/somewhere/gemma-3-270m", "embedded:gemma-3-270m")
    with pytest.raises(ValueError, match="trained on base 'embedded:gemma-3-270m', not pretrained='gpt2'"):
        SFTLoRALM(pretrained="gpt2", adapter=ad)
    ad2 = fake_adapter(tmp_path / "b", "Qwen/Qwen2.5-0.5B", None)
    with pytest.raises(ValueError, match="trained on base 'Qwen/Qwen2.5-0.5B'"):
        DPOLM(pretrained="gpt2", adapter=ad2)


def test_bad_rescore_and_unknown_args(tmp_path):
    ad = fake_adapter(tmp_path / "a", "x", "embedded:gemma-3-270m")
    with pytest.raises(ValueError, match="rescore='dpo': must be none | implicit | s_hat"):
        DPOLM(adapter=ad, rescore="dpo")
    with pytest.raises(ValueError, match="unknown --model sft_lora model_arg.*rescore"):
        SFTLoRALM(adapter=ad, rescore="none")
    with pytest.raises(ValueError, match="model_arg.*k, retriever only apply with rescore=s_hat"):
        DPOLM(adapter=ad, rescore="implicit", retriever="bm25", k=3)
    with pytest.raises(ValueError, match="model_args peft and its alias adapter|both given"):
        DPOLM(adapter=ad, peft=str(tmp_path))


def test_implicit_reward_equals_full_forward_difference(tmp_path_factory, twins_dir):
    from icdpo_eval.engine import Engine

    lm = DPOLM(adapter=str(trained(tmp_path_factory)["dpo"]), rescore="implicit", device="cpu")
    assert lm.pretrained == BASE  # the adapter's own base, from its provenance
    ref = Engine.load(str(twins_dir / "teacher"), device="cpu", dtype="float32")  # the base without the adapter
    got = lm.scorer.score([[Candidate(X, y) for y in YS]])[0]
    for y, g in zip(YS, got):
        want = lm.engine.logprob_full_forward(X, y) - ref.logprob_full_forward(X, y)
        assert g == pytest.approx(want, abs=1e-3)
        assert abs(want) > 1e-3  # the adapter matters
    assert lm.get_model_info()["rescore"] == "implicit" and lm.get_model_info()["training"]["method"] == "dpo"


@pytest.mark.parametrize("model,args", [
    ("sft_lora", "max_new_tokens=8"),
    ("dpo", "rescore=s_hat,n=2,k=1,max_new_tokens=8"),
    ("dpo", "rescore=implicit,n=2,max_new_tokens=8"),
])
def test_stock_lm_eval_cli(tmp_path_factory, tmp_path, model, args):
    adapter = trained(tmp_path_factory)["sft" if model == "sft_lora" else "dpo"]
    res = lm_eval("--model", model, "--model_args", f"adapter={adapter},{args}", "--tasks", "hh_harmless_mini",
                  "--limit", "2", "--output_path", str(tmp_path / "out"), "--log_samples").ok()
    check_rm_reward(res.results["results"]["hh_harmless_mini"], rm_items(res.samples["hh_harmless_mini"]), 2)
    cfg = res.results["config"]
    assert cfg["method"] == model and cfg["adapter"] == str(adapter)
    if model == "dpo":
        assert cfg["rescore"] == args.split(",")[0].split("=")[1] and cfg["n"] == 2
