"""Reward-model judge, offline proxy RM and the rm_reward lm-eval metric.

Runs on the tiny random twins of the embedded models (the proxy RM is fitted on the SBERT twin's embeddings), except
``test_shipped_proxy_accuracy_matches_the_recorded_constant`` (marked ``real``): the recorded accuracy is the real
encoder's, so only the real all-MiniLM-L6-v2 can reproduce it."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from icdpo_eval.data.hh import hh_to_turns
from icdpo_eval.judges import reward_model as rmod
from icdpo_eval.judges.reward_model import (
    PAPER_RM,
    RewardModelJudge,
    hh_format,
    oasst_format,
    resolve_rm_name,
)
from icdpo_eval.stats import wilson

PROMPT = (
    "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?"
    "\n\nHuman: Tell me a joke.\n\nAssistant:"
)


# ----------------------------------------------------------------------------- formatting


def test_hh_to_turns_multi_turn():
    assert hh_to_turns(PROMPT) == [
        ("user", "Hi there"),
        ("assistant", "Hello! How can I help?"),
        ("user", "Tell me a joke."),
    ]
    # leading blank line optional, trailing response kept when present
    assert hh_to_turns("Human: a\n\nAssistant: b") == [("user", "a"), ("assistant", "b")]


def test_hh_to_turns_rejects_text_without_human_turn():
    with pytest.raises(ValueError, match="no 'Human:' turn"):
        hh_to_turns("Tell me a joke.")
    with pytest.raises(ValueError, match="no 'Human:' turn"):
        hh_to_turns("\n\nAssistant: hi")


def test_oasst_format_exact():
    assert oasst_format(PROMPT, "  Why did the chicken cross the road? ") == (
        "<|prompter|>Hi there<|endoftext|><|assistant|>Hello! How can I help?<|endoftext|>"
        "<|prompter|>Tell me a joke.<|endoftext|>"
        "<|assistant|>Why did the chicken cross the road?<|endoftext|>"
    )


def test_hh_format_round_trip():
    assert hh_format(PROMPT, " ok ") == PROMPT + " ok"


# ----------------------------------------------------------------------------- resolution


@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(rmod, "_warned_proxy", False)


def test_resolve_explicit_name_unchanged(monkeypatch):
    assert resolve_rm_name("some/rm") == "some/rm"
    assert resolve_rm_name("proxy") == "proxy"


def test_the_old_rm_variable_is_an_error_naming_the_setting(monkeypatch):
    from icdpo_eval.config import settings

    monkeypatch.setenv("ICDPO_RM", "my/rm")
    with pytest.raises(settings.MovedVariableError, match="ICDPO_RM is no longer read.*--metadata '{\"rm\""):
        settings.check_moved()


def test_resolve_paper_rm_when_available(monkeypatch):
    monkeypatch.setattr(rmod, "paper_rm_available", lambda: True)
    assert resolve_rm_name("auto") == PAPER_RM


def test_resolve_offline_falls_back_to_proxy_with_one_warning(monkeypatch, caplog, fresh_warning):
    monkeypatch.setattr(rmod, "paper_rm_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_rm_name("auto") == "proxy"
        assert resolve_rm_name(None) == "proxy"
    warnings = [r for r in caplog.records if "PROXY" in r.getMessage()]
    assert len(warnings) == 1


def test_paper_rm_available_offline_makes_no_network_call(monkeypatch):
    import huggingface_hub

    def boom(*a, **k):
        raise AssertionError("network call while HF_HUB_OFFLINE=1")

    from icdpo_eval import runtime

    monkeypatch.setattr(runtime, "_HUB_AVAILABLE", {})
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", boom)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert rmod.paper_rm_available() is False
    monkeypatch.setattr(runtime, "_HUB_AVAILABLE", {})
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: "/cache/config.json")
    assert rmod.paper_rm_available() is True


# ----------------------------------------------------------------------------- rm_reward metric


class FakeJudge:
    resolved_name = "fake-rm"

    def __init__(self):
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        return [float(len(r)) - 0.5 * len(p) for p, r in zip(prompts, responses, strict=True)]


def test_process_results_and_aggregate(monkeypatch, caplog):
    from icdpo_eval.tasks import metrics

    judge = FakeJudge()
    monkeypatch.setattr(rmod, "get_judge", lambda name="auto", dtype=None, batch_size=8: judge)
    docs = [{"id": f"d{i}", "prompt": "\n\nHuman: " + "x" * i + "\n\nAssistant:"} for i in range(3)]
    outs = [" abc ", "", "hello world"]
    with caplog.at_level(logging.WARNING):
        items = [metrics.process_results(d, [o])["rm_reward"] for d, o in zip(docs, outs, strict=True)]
    empty = [r.getMessage() for r in caplog.records if "empty response" in r.getMessage()]
    assert len(empty) == 1 and "doc d1" in empty[0]  # the one empty response, named
    assert [it["response"] for it in items] == ["abc", "", "hello world"]
    expected = [3 - 0.5 * len(docs[0]["prompt"]), 0 - 0.5 * len(docs[1]["prompt"]),
                11 - 0.5 * len(docs[2]["prompt"])]
    value = metrics.rm_reward_aggregate(items)
    assert value == pytest.approx(100 * sum(expected) / 3)
    assert judge.calls == 1  # one batched call for all documents
    # rewards are written into the items (what --log_samples serialises)
    assert [it["reward"] for it in items] == pytest.approx(expected)
    assert {it["rm"] for it in items} == {"fake-rm"}
    # a second aggregation over the same items does not rescore
    assert metrics.rm_reward_aggregate(items) == pytest.approx(value)
    assert judge.calls == 1


def test_aggregate_reads_the_rm_from_the_task_settings(monkeypatch):
    from icdpo_eval.config.options import TASK_SETTINGS
    from icdpo_eval.tasks import metrics
    from icdpo_eval.tasks.settings import SETTINGS_FIELD, register_settings

    seen = []

    def get_judge(name="auto", dtype=None, batch_size=8):
        seen.append((name, dtype, batch_size))
        return FakeJudge()

    monkeypatch.setattr(rmod, "get_judge", get_judge)
    key = register_settings(TASK_SETTINGS.parse({"rm": "set/rm", "rm_dtype": "bf16"}, where="task setting"))
    doc = {"id": "a", "prompt": PROMPT, SETTINGS_FIELD: key}
    metrics.rm_reward_aggregate([metrics.process_results(doc, ["hi"])["rm_reward"]])
    metrics.rm_reward_aggregate([metrics.process_results({"id": "a", "prompt": PROMPT}, ["hi"])["rm_reward"]])
    assert seen == [("set/rm", "bfloat16", 8), ("auto", "float32", 8)]


# ----------------------------------------------------------------------------- HF reward models


def _tiny_rm(path: Path, num_labels: int = 1) -> Path:
    """A random 1-layer Llama sequence classifier with the embedded SmolLM2 tokenizer (offline)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from icdpo_eval.data.embedded import teacher_model_path

    tok = AutoTokenizer.from_pretrained(teacher_model_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=num_labels,
                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_hf_rm_oasst_style_left_truncation_and_batching(tmp_path):
    judge = RewardModelJudge(str(_tiny_rm(tmp_path / "tiny-oasst-rm")), device="cpu", batch_size=2,
                             max_length=12)
    assert judge.style == "oasst" and judge.resolved_name.endswith("tiny-oasst-rm")
    text = oasst_format(PROMPT, "Because it wanted to get to the other side.")
    full = judge.tokenizer(text, add_special_tokens=True)["input_ids"]
    assert len(full) > 12
    ids = judge.encode([text])["input_ids"][0].tolist()
    assert ids == full[-12:]  # the end (the response) is kept
    prompts, responses = [PROMPT] * 3, ["short", "a much longer answer " * 5, "ok"]
    batched = judge.score(prompts, responses)
    single = [judge.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]
    assert batched == pytest.approx(single, abs=1e-4)


def test_hf_rm_chat_template_and_label_checks(tmp_path):
    path = _tiny_rm(tmp_path / "tiny-chat-rm")
    judge = RewardModelJudge(str(path), device="cpu")
    assert judge.style == "chat"
    assert "Tell me a joke." in judge.format(PROMPT, "no")
    two = _tiny_rm(tmp_path / "two-label-rm", num_labels=2)
    with pytest.raises(ValueError, match="2 output labels"):
        RewardModelJudge(str(two), device="cpu")
    assert len(RewardModelJudge(str(two), device="cpu", label_index=1).score([PROMPT], ["x"])) == 1


def test_bad_rm_name_gives_clear_error(tmp_path):
    missing = tmp_path / "no-such-reward-model"
    missing.mkdir()
    with pytest.raises(ValueError, match="could not load reward model .*no-such-reward-model"):
        RewardModelJudge(str(missing), device="cpu")


# ----------------------------------------------------------------------------- proxy RM


def test_proxy_deterministic_and_batch_invariant():
    from icdpo_eval.data.datasets import load_pairs
    from icdpo_eval.judges.proxy_rm import ProxyRewardModel

    pool = load_pairs("hh-rlhf-mini", None, "pool")
    small = pool[:60]
    a = ProxyRewardModel(small, cache=False)
    b = ProxyRewardModel(small, cache=False)
    # fitted on the tiny SBERT twin (ICDPO_EMBEDDED_DIR): named, and cached, apart from the real encoder's fit
    assert a.name == b.name and a.name.startswith("proxy:bt-embedded-dir@")
    assert a.w.tolist() == b.w.tolist()
    rows = pool[100:110]
    prompts = [r["prompt"] for r in rows] * 2
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    batched = a.score(prompts, responses)
    single = [a.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]
    assert batched == pytest.approx(single, abs=1e-5)
    assert batched == pytest.approx(b.score(prompts, responses), abs=1e-5)


ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    """``benchmarks/proxy_rm_accuracy.py`` as a module (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("proxy_rm_accuracy", ROOT / "benchmarks" / "proxy_rm_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.real
def test_shipped_proxy_accuracy_matches_the_recorded_constant():
    """The benchmark's measurement on the vendored held-out sample (runs in a plain clone, no ../shared) is the
    one PROXY_HELDOUT_ACCURACY records; that constant is the number in the log warning and the README.
    REAL weights: the constant is the accuracy of the proxy fitted on the real all-MiniLM-L6-v2's embeddings;
    on the random SBERT twin the fit and its accuracy are other numbers (near chance)."""
    from icdpo_eval.data.datasets import load_pairs_file
    from icdpo_eval.judges.proxy_rm import HELDOUT_SAMPLE_FILE, PROXY_HELDOUT_ACCURACY

    rec = PROXY_HELDOUT_ACCURACY.sample
    rows = load_pairs_file(HELDOUT_SAMPLE_FILE)
    assert len(rows) == rec.n == 200
    judge = RewardModelJudge("proxy", device="cpu")
    assert judge.resolved_name.startswith("proxy:bt-minilm@")
    bench = _benchmark()
    k, n = bench.pairwise_accuracy(judge.score, rows)
    # within 2 of the 200 pairs (float noise across BLAS/torch builds may flip a near-tie; a real change moves more)
    assert abs(k / n - rec.accuracy) <= 0.01, f"measured {k}/{n}, PROXY_HELDOUT_ACCURACY.sample records {rec}"
    assert wilson(k, n)[0] > 0.5, "the proxy no longer beats chance"


def test_vendored_heldout_sample_is_the_seeded_sample(monkeypatch, shared_hh_test):
    """icdpo_eval/data/hh_harmless_heldout is ``--n 200``'s sample of all held-out pairs (what the benchmark and
    the constant call the vendored seeded sample)."""
    from icdpo_eval.data.datasets import heldout_pairs, load_pairs_file
    from icdpo_eval.judges.proxy_rm import HELDOUT_SAMPLE_FILE, PROXY_HELDOUT_ACCURACY

    monkeypatch.setenv("ICDPO_DATA_DIR", str(shared_hh_test.parents[2]))
    held = heldout_pairs(apply_length_filter=False)
    assert len(held) == PROXY_HELDOUT_ACCURACY.all.n
    keys = ("id", "prompt", "chosen", "rejected")
    expected = [tuple(r[k] for k in keys) for r in random.Random(0).sample(held, PROXY_HELDOUT_ACCURACY.sample.n)]
    assert [tuple(r[k] for k in keys) for r in load_pairs_file(HELDOUT_SAMPLE_FILE)] == expected


def test_recorded_proxy_accuracy_is_what_logs_and_readme_say(monkeypatch, caplog, fresh_warning):
    from icdpo_eval.judges.proxy_rm import PROXY_HELDOUT_ACCURACY as rec

    monkeypatch.setattr(rmod, "paper_rm_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert resolve_rm_name("auto") == "proxy"
    assert f"{rec.all} pairwise accuracy" in caplog.text
    readme = (ROOT / "README.md").read_text()
    assert rec.command in readme
    for pairs, acc in (("all held-out", rec.all), ("vendored seeded sample", rec.sample)):
        rows = [ln for ln in readme.splitlines() if ln.startswith("| proxy RM `proxy:") and f"| {pairs} |" in ln]
        lo, hi = acc.ci95
        assert len(rows) == 1 and f"| {acc.n} | {acc.accuracy:.3f} | [{lo:.3f}, {hi:.3f}] |" in rows[0], (pairs, rows)
