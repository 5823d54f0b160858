"""OpenAssistant ``gpt_neox_reward_model`` (the paper's RM architecture) through the reward-model judge.

A tiny random checkpoint in the released layout (``tests/_tiny_oasst_rm.py``) is loaded the way the
``rm_reward`` metric loads the real one (``RewardModelJudge(path)``) and checked against a hand
computation on the bare GPT-NeoX trunk: pooled hidden state times ``out_proj``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _inproc import lm_eval
from _rm_checks import check_rm_reward, rm_items
from _tiny_oasst_rm import build_tiny_oasst_rm

from icdpo_eval.judges import reward_model as rmod
from icdpo_eval.judges.oasst_rm import (
    GPTNeoXRewardModel,
    GPTNeoXRewardModelConfig,
    pool_hidden_states,
    register,
)
from icdpo_eval.judges.reward_model import RewardModelJudge, canonical_dtype, oasst_format

PROMPT = (
    "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?"
    "\n\nHuman: Tell me a joke.\n\nAssistant:"
)
PAIRS = [
    (PROMPT, "Why did the chicken cross the road? To get to the other side."),
    ("\n\nHuman: What is the capital of France?\n\nAssistant:", "Paris."),
    (PROMPT, "I can't help with that, but here is something safer you could try instead. " * 3),
]
TOL = 1e-5


@pytest.fixture(scope="module")
def rm_paths(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rms")
    # the directory names avoid "oasst": the input style must come from the tokenizer
    return {p: build_tiny_oasst_rm(root / f"tiny-neox-rm-{p}", pooling=p) for p in ("last", "mean")}


@pytest.fixture(scope="module")
def judges(rm_paths) -> dict[str, RewardModelJudge]:
    return {p: RewardModelJudge(str(path), device="cpu", batch_size=8) for p, path in rm_paths.items()}


def hand_reward(judge: RewardModelJudge, ids: list[int]) -> float:
    """Bare trunk on unpadded ids, pooled by hand, times ``out_proj``."""
    model = judge.model
    with torch.no_grad():
        hidden = model.gpt_neox(input_ids=torch.tensor([ids])).last_hidden_state[0]
        pooled = hidden[-1] if model.config.pooling == "last" else hidden.mean(dim=0)
        return float(pooled @ model.out_proj.weight[0] + model.out_proj.bias[0])


def unpadded_ids(judge: RewardModelJudge, prompt: str, response: str) -> list[int]:
    return judge.tokenizer(judge.format(prompt, response))["input_ids"]


# ----------------------------------------------------------------------------- config and registration


def test_released_config_layout_loads_as_reward_model(rm_paths):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    register()
    register()  # idempotent
    cfg = AutoConfig.from_pretrained(rm_paths["mean"])
    assert isinstance(cfg, GPTNeoXRewardModelConfig)
    assert cfg.pooling == "mean" and cfg.num_labels == 1
    assert cfg.rope_parameters["partial_rotary_factor"] == 0.25  # legacy rotary_pct understood
    model = AutoModelForSequenceClassification.from_pretrained(rm_paths["last"], dtype=torch.float32)
    assert isinstance(model, GPTNeoXRewardModel) and model.config.pooling == "last"
    names = {n for n, _ in model.named_parameters()}
    assert {"out_proj.weight", "out_proj.bias", "gpt_neox.embed_in.weight"} <= names
    assert all(n.startswith(("gpt_neox.", "out_proj.")) for n in names)
    with pytest.raises(Exception, match="unknown pooling"):
        GPTNeoXRewardModelConfig(hidden_size=32, num_attention_heads=4, pooling="max")
    assert GPTNeoXRewardModelConfig(hidden_size=32, num_attention_heads=4, pooling=None).pooling == "last"


def test_forward_shapes_and_missing_mask(judges):
    model = judges["last"].model
    ids = torch.randint(5, model.config.vocab_size, (3, 9))
    with torch.no_grad():
        bare = model(input_ids=ids).logits
        masked = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert bare.shape == (3, 1)
    assert torch.allclose(bare, masked, atol=TOL)


def test_pooling_picks_last_real_token_for_either_padding_side():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert torch.equal(pool_hidden_states(hidden, right, "last"), torch.stack([hidden[0, 2], hidden[1, 4]]))
    assert torch.equal(pool_hidden_states(hidden, left, "last"), torch.stack([hidden[0, 4], hidden[1, 4]]))
    assert torch.allclose(pool_hidden_states(hidden, right, "mean")[0], hidden[0, :3].mean(0))
    assert torch.allclose(pool_hidden_states(hidden, left, "mean")[0], hidden[0, 2:].mean(0))


# ----------------------------------------------------------------------------- rewards through the judge


def test_judge_picks_oasst_style_from_tokenizer(judges):
    judge = judges["last"]
    assert "oasst" not in judge.resolved_name.lower()
    assert judge.style == "oasst"
    assert judge.format(*PAIRS[0]) == oasst_format(*PAIRS[0])
    ids = unpadded_ids(judge, *PAIRS[0])
    assert judge.tokenizer.convert_ids_to_tokens(ids)[0] == "<|prompter|>"
    assert ids[-1] == judge.tokenizer.eos_token_id


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_reward_equals_hand_computation(judges, pooling):
    judge = judges[pooling]
    for prompt, response in PAIRS:
        got = judge.score([prompt], [response])[0]
        assert got == pytest.approx(hand_reward(judge, unpadded_ids(judge, prompt, response)), abs=TOL)
    assert len({round(r, 4) for r in judge.score(*zip(*PAIRS, strict=True))}) == len(PAIRS)  # not constant


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_batch_with_padding_equals_single(judges, pooling):
    judge = judges[pooling]
    prompts, responses = (list(x) for x in zip(*PAIRS, strict=True))
    enc = judge.encode([judge.format(p, r) for p, r in PAIRS])
    assert (enc["attention_mask"].sum(1) < enc["input_ids"].shape[1]).any()  # the batch really is padded
    assert (enc["attention_mask"][:, 0] == 1).all()  # on the right
    batched = judge.score(prompts, responses)
    single = [judge.score([p], [r])[0] for p, r in PAIRS]
    assert batched == pytest.approx(single, abs=TOL)
    assert batched == pytest.approx([hand_reward(judge, unpadded_ids(judge, p, r)) for p, r in PAIRS], abs=TOL)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_left_truncation_at_1024_keeps_response_end(judges, pooling):
    judge = judges[pooling]
    assert judge.max_length == 1024
    long_prompt = "\n\nHuman: " + "Tell me a joke about chickens and roads, please. " * 150 + "\n\nAssistant:"
    response = "Why did the chicken cross the road? To get to the other side."
    full = unpadded_ids(judge, long_prompt, response)
    assert len(full) > 1024
    kept = full[-1024:]
    assert judge.encode([judge.format(long_prompt, response)])["input_ids"][0].tolist() == kept
    got = judge.score([long_prompt], [response])[0]
    assert got == pytest.approx(hand_reward(judge, kept), abs=TOL)
    assert abs(got - hand_reward(judge, full[:1024])) > 1e-3  # right truncation would score differently
    # batched with a short pair (padded to 1024) it is unchanged
    assert judge.score([long_prompt, PAIRS[1][0]], [response, PAIRS[1][1]])[0] == pytest.approx(got, abs=TOL)


# ----------------------------------------------------------------------------- precision


def test_fp32_by_default_bf16_on_request(rm_paths, judges):
    judge = judges["last"]  # built with no dtype; the checkpoint is stored in float16
    assert judge.dtype_name == "float32" and judge.model.dtype == torch.float32
    assert json.loads((rm_paths["last"] / "config.json").read_text())["torch_dtype"] == "float16"
    bf16 = RewardModelJudge(str(rm_paths["last"]), device="cpu", dtype="bf16")
    assert bf16.dtype_name == "bfloat16" and bf16.model.dtype == torch.bfloat16
    (r16,), (r32,) = bf16.score([PAIRS[0][0]], [PAIRS[0][1]]), judge.score([PAIRS[0][0]], [PAIRS[0][1]])
    assert math.isfinite(r16) and r16 == pytest.approx(r32, abs=0.1 + 0.05 * abs(r32))
    for alias, name in [("fp32", "float32"), ("FLOAT16", "float16"), ("fp16", "float16"), (None, "float32"),
                        ("bfloat16", "bfloat16"), ("torch.float32", "float32")]:
        assert canonical_dtype(alias) == name
    with pytest.raises(ValueError, match="dtype='int8' is not one of: auto, float32, fp32, bfloat16, bf16"):
        RewardModelJudge(str(rm_paths["last"]), device="cpu", dtype="int8")


def test_rm_dtype_is_a_task_setting_and_judges_load_once(rm_paths, monkeypatch):
    from icdpo_eval.config.options import TASK_SETTINGS
    from icdpo_eval.errors import OptionError

    monkeypatch.setattr(rmod, "_JUDGES", {})
    cfg = TASK_SETTINGS.parse({"rm": str(rm_paths["last"]), "rm_dtype": "bf16"}, where="task setting")
    judge = rmod.get_judge(cfg.rm, cfg.rm_dtype, cfg.rm_batch_size)
    assert judge.dtype_name == "bfloat16" and judge.model.dtype == torch.bfloat16
    assert rmod.get_judge(cfg.rm, "bfloat16", 8) is judge  # cached: a reward model loads once per run
    assert rmod.get_judge(cfg.rm).dtype_name == "float32"
    with pytest.raises(OptionError, match="rm_dtype='half-ish': must be float32 | bfloat16 | float16"):
        TASK_SETTINGS.parse({"rm_dtype": "half-ish"}, where="task setting")


def test_rm_scorer_model_records_dtype(rm_paths):
    from icdpo_eval.models.rm import RMScorerLM

    info = RMScorerLM(rm=str(rm_paths["last"]), device="cpu", dtype="bf16").get_model_info()
    assert (info["method"], info["rm"], info["rm_dtype"]) == ("rm", str(rm_paths["last"]), "bfloat16")
    assert RMScorerLM(rm=str(rm_paths["mean"]), device="cpu").get_model_info()["rm_dtype"] == "float32"


# ----------------------------------------------------------------------------- end to end


def test_lm_eval_rm_reward_with_oasst_reward_model(rm_paths, tmp_path):
    rm = str(rm_paths["last"])
    res = lm_eval("--model", "icdpo", "--model_args", "max_new_tokens=8", "--tasks", "hh_harmless_mini",
                  "--limit", "2", "--output_path", str(tmp_path / "out"), "--log_samples",
                  "--metadata", json.dumps({"rm": rm})).ok()
    doc = res.results
    r = doc["results"]["hh_harmless_mini"]
    assert r["rm,none"] == rm
    # the effective settings are recorded in the results' config, each sampling value with where it came from
    cfg = doc["config"]
    assert (cfg["preset"], cfg["score_eos"], cfg["dialogue"], cfg["instructions"]) == ("paper", True, "pro", "ours")
    used = cfg["sampling"]["hh_harmless_mini"]
    assert used["top_k"] == [50, "generation_config"] and used["top_p"] == [0.8, "task"], used
    assert used["temperature"] == [1.0, "generation_config"] and used["max_new_tokens"] == [8, "model_args"]
    assert cfg["icdpo_eval"]["task_settings"]["hh_harmless_mini"]["rm"] == rm
    # finite, 100 x the mean of the logged per-document rewards, different for the two different answers
    items = rm_items(res.samples["hh_harmless_mini"])
    rewards = check_rm_reward(r, items, 2)
    # each logged reward is the tiny RM's own score of the logged (prompt, response)
    judge = RewardModelJudge(rm, device="cpu")
    assert rewards == pytest.approx(judge.score([it["prompt"] for it in items], [it["response"] for it in items]),
                                    abs=1e-4)
