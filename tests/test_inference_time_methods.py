"""Weak-to-strong search, URIAL and ARGS (``--model w2s | urial | args``): each algorithm pinned by an equality with
a simpler computation on the engine, their bad inputs, and one run of each through the stock CLI.

All on the tiny random twins (the Gemma twin has a short sliding window, so the URIAL prefix's cache crosses it);
the guide adapter is trained for 2 steps on the teacher's twin (``tests/_trained_adapters.py``), whose tokenizer is
not the base model's: the guide scores text. Random weights exercise these equalities as well as trained ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inproc import lm_eval
from _trained_adapters import trained

from icdpo_eval.config import names
from icdpo_eval.engine import Engine, SamplingParams, stable_seed
from icdpo_eval.errors import OptionError
from icdpo_eval.method.beam_search import ImplicitReward, chunk_beam_search
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.prompts import HH, TURN_MARKERS, as_continuation
from icdpo_eval.method.reward_guided import Trace, reward_guided
from icdpo_eval.method.scorers import Candidate

X = "\n\nHuman: How do I keep basil alive on a windowsill?\n\nAssistant:"
X2 = ("\n\nHuman: What is a good first programming language?\n\nAssistant: It depends.\n\nHuman: For games?"
      "\n\nAssistant:")


@pytest.fixture(scope="module")
def base(twins_dir) -> Engine:
    return Engine.load(names.resolve("embedded:base"), device="cpu", dtype="float32")


def test_module_fixtures_run_on_the_twins(base, twins_dir):
    """A module-scoped fixture is set up before the per-test autouse fixtures: ``embedded:base`` must still resolve to
    the tiny twin, not the real model (seen: it loaded the converted 270M model)."""
    assert Path(base.weights_key[0]) == twins_dir / "base"


@pytest.fixture(scope="module")
def guide(tmp_path_factory, twins_dir) -> ImplicitReward:
    adapter = trained(tmp_path_factory)["dpo"]
    tuned = Engine.load(names.resolve("embedded:teacher"), device="cpu", dtype="float32", adapter=str(adapter))
    return ImplicitReward(tuned)


# ------------------------------------------------------------------------------------------------ w2s
def test_w2s_with_one_beam_and_one_chunk_is_best_of_n_under_the_guide(base, guide):
    params = SamplingParams(max_new_tokens=10, top_p=1.0, top_k=50, temperature=0.7, stop=TURN_MARKERS)
    got = chunk_beam_search(base, guide, X, HH.zero_shot(X), params=params, beam_width=1, successors=4,
                            chunk_length=10, seed=7)
    want = sample_and_select(base, guide, [X], [HH.zero_shot(X)], [[]], n=4, params=params, seed=7)[0]
    (chunk,) = got.internals
    assert [c["text"] for c in chunk["candidates"]] == want.candidates  # the very same samples
    assert [c["score"] for c in chunk["candidates"]] == pytest.approx(want.scores, abs=1e-5)
    assert len(set(want.scores)) > 1  # the guide tells them apart, so the choice below is a real one
    assert got.text == want.text == want.candidates[max(range(4), key=lambda i: want.scores[i])]


def test_w2s_keeps_the_best_w_of_every_chunk_and_stops_when_all_are_finished(base, guide):
    params = SamplingParams(max_new_tokens=12, top_p=1.0, top_k=50, temperature=0.7, stop=TURN_MARKERS)
    got = chunk_beam_search(base, guide, X2, HH.zero_shot(X2), params=params, beam_width=2, successors=3,
                            chunk_length=4, seed=3)
    assert 1 <= got.chunks <= 3 and len(got.internals) == got.chunks
    assert len(got.internals[0]["candidates"]) == 6  # W·K samples from the prompt
    for chunk in got.internals:
        scores = [c["score"] for c in chunk["candidates"]]
        kept = [c["score"] for c in chunk["candidates"] if c["kept"]]
        assert len(kept) == 2 and min(kept) >= max(s for s, c in zip(scores, chunk["candidates"]) if not c["kept"])
    last = [c for c in got.internals[-1]["candidates"] if c["kept"]]
    assert all(c["finished"] for c in last)
    assert got.text == max(last, key=lambda c: c["score"])["text"]


def test_the_guide_score_of_a_partial_response_is_a_plain_forward_of_both_models(base, guide, twins_dir):
    y = as_continuation("Water it when the top")
    (pair,) = guide.score([[Candidate(X, y)]], [[False]])
    tuned = guide.tuned
    with tuned.model.disable_adapter():
        untuned = tuned.logprob_full_forward(HH.zero_shot(X), y)
    want = tuned.logprob_full_forward(HH.zero_shot(X), y) - untuned
    assert pair[0] == pytest.approx(want, abs=1e-4) and abs(want) > 1e-4
    # a guide of two models (here: the base twin as "tuned", the teacher twin as "untuned": any two)
    other = Engine.load(names.resolve("embedded:teacher"), device="cpu", dtype="float32")
    two = ImplicitReward(base, other)
    (pair,) = two.score([[Candidate(X, y)]], [[False]])
    want = base.logprob_full_forward(HH.zero_shot(X), y) - other.logprob_full_forward(HH.zero_shot(X), y)
    assert pair[0] == pytest.approx(want, abs=1e-4)


# ------------------------------------------------------------------------------------------------ ARGS
def test_args_with_zero_weight_is_greedy_decoding_of_the_base(base):
    params = SamplingParams(max_new_tokens=8, do_sample=False, stop=TURN_MARKERS)
    ctx = [base.encode_context(HH.zero_shot(p)) for p in (X, X2)]
    calls = []

    def reward(prompts, texts):
        calls.append(len(texts))
        return [float(len(t) % 7) for t in texts]  # not constant: w = 0 must ignore it

    choose = reward_guided(base, reward, [X, X2], k=5, w=0.0)
    got = base.sample_ids(ctx, 1, params, [1, 2], choose=choose)
    greedy = base.sample_ids(ctx, 1, params, [1, 2])
    assert [s.token_ids for (s,) in got] == [s.token_ids for (s,) in greedy]
    assert calls and all(c % 5 == 0 for c in calls)  # k rewards per row, one batch per step


def test_args_takes_the_best_of_logit_plus_weighted_reward(base):
    params = SamplingParams(max_new_tokens=6, do_sample=False, stop=TURN_MARKERS)
    trace = Trace()
    choose = reward_guided(base, lambda p, t: [float(-len(x)) for x in t], [X], k=4, w=1.5, trace=trace)
    (s,), = base.sample_ids([base.encode_context(HH.zero_shot(X))], 1, params, [5], choose=choose)
    steps = trace.record(0)["internals"]["steps"]
    assert len(steps) >= len(s.token_ids)
    for step in steps:
        total = [lm + 1.5 * rm for lm, rm in zip(step["lm"], step["rm"])]
        assert step["chosen"] == max(range(4), key=lambda j: total[j])
    assert any(st["chosen"] != 0 for st in steps)  # the reward changed at least one greedy choice


# ------------------------------------------------------------------------------------------------ URIAL
def test_urial_under_the_cached_prefix_equals_plain_generation_and_prefills_it_once(base):
    from icdpo_eval.method import urial

    align = urial.load("ours")
    pre = base.encode_context(align.text)
    suffixes = [base.encode_continuation(align.follow(p, HH)) for p in (X, X2)]  # two lengths: the merged batch
    params = SamplingParams(max_new_tokens=8, temperature=0.3, top_p=1.0, repetition_penalty=1.1, stop=TURN_MARKERS)
    seeds = [stable_seed(1, p) for p in (X, X2)]
    before = base.counts["prefix_prefills"]
    prefix = base.prefix(pre)
    cached = base.sample_ids(suffixes, 2, params, seeds, prefix=prefix)
    again = base.sample_ids(suffixes[:1], 2, params, seeds[:1], prefix=prefix)
    plain = base.sample_ids([pre + s for s in suffixes], 2, params, seeds)
    assert base.counts["prefix_prefills"] - before == 1
    assert len(pre) > 64  # longer than the twin's sliding window
    for c_doc, p_doc in zip(cached, plain):
        for c, p in zip(c_doc, p_doc):
            assert c.token_ids == p.token_ids
            assert c.token_logprobs == pytest.approx(p.token_logprobs, abs=1e-4)
    assert [s.token_ids for s in again[0]] == [s.token_ids for s in plain[0]]
    conts = [[base.encode_continuation(" Keep it in sun.")], [base.encode_continuation(" Python."), [42]]]
    got = base.logprobs_ids(suffixes, conts, prefix=prefix)
    want = base.logprobs_ids([pre + s for s in suffixes], conts)
    assert [v for row in got for v in row] == pytest.approx([v for row in want for v in row], abs=1e-4)


def test_repetition_penalty_is_transformers_own(base):
    """Greedy paths under HF's repetition penalty equal ``generate``'s. URIAL's 1.3 leaves a random twin's greedy path
    unchanged (it never repeats a token), so 0.5 (same formula, favouring seen tokens) makes the check bite."""
    import torch

    ids = base.encode_context(HH.zero_shot(X))
    plain = base.sample_ids([ids], 1, SamplingParams(max_new_tokens=10, do_sample=False), [0])[0][0]
    for penalty in (1.3, 0.5):
        params = SamplingParams(max_new_tokens=10, do_sample=False, repetition_penalty=penalty)
        (s,), = base.sample_ids([ids], 1, params, [0])
        with torch.inference_mode():
            out = base.model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                                      repetition_penalty=penalty, min_new_tokens=10)
        assert s.token_ids == out[0, len(ids):len(ids) + len(s.token_ids)].tolist(), penalty
    assert s.token_ids != plain.token_ids  # the penalty changed the greedy path


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_fail_before_any_weights_load(tmp_path, monkeypatch):
    from icdpo_eval.baselines.args import ARGSLM
    from icdpo_eval.baselines.urial import URIALLM
    from icdpo_eval.baselines.w2s import WeakToStrongLM
    from icdpo_eval.engine import loading

    monkeypatch.setattr(loading, "load_weights", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(OptionError, match="needs model_arg tuned="):
        WeakToStrongLM()
    with pytest.raises(OptionError, match="tuned='/nowhere/dpo': no such folder"):
        WeakToStrongLM(tuned="/nowhere/dpo")
    with pytest.raises(OptionError, match="untuned"):
        WeakToStrongLM(tuned=str(tmp_path))  # a folder that is no adapter, and no untuned half
    with pytest.raises(OptionError, match="untuned='/nowhere/base'"):
        WeakToStrongLM(tuned=str(tmp_path), untuned="/nowhere/base")
    with pytest.raises(OptionError, match="args_k=0"):
        ARGSLM(args_k=0)
    long = tmp_path / "prefix.txt"
    long.write_text("An example of a long prefix. " * 40)
    with pytest.raises(OptionError, match=r"urial_prompt=.*prefix is \d+ tokens, not under max_length=64"):
        URIALLM(urial_prompt=str(long), max_length=64)
    with pytest.raises(OptionError, match="not ours, released, nor an existing file"):
        URIALLM(urial_prompt="nowhere.txt")


def test_released_urial_prompt_offline_is_one_line_naming_the_file_to_pass(monkeypatch, tmp_path):
    from icdpo_eval.method import urial

    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(urial, "fetch_pinned", lambda *a: (_ for _ in ()).throw(
        OptionError("urial_prompt=released: could not fetch (offline); offline, pass " + urial.FILE_HINT)))
    with pytest.raises(OptionError, match="pass urial_prompt=FILE"):
        urial.load("released")
    monkeypatch.setattr(urial, "fetch_pinned", lambda *a: "not the authors' text")
    with pytest.raises(OptionError, match="does not match its pinned sha256"):
        urial.load("released")


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("model", ["w2s", "urial", "args"])
def test_each_method_through_the_stock_cli(model, tmp_path_factory, tmp_path):
    args = {"w2s": f"tuned={trained(tmp_path_factory)['dpo']},chunk_length=4,max_new_tokens=8",
            "urial": "max_new_tokens=8", "args": "args_k=3,max_new_tokens=6"}[model]
    res = lm_eval("--model", model, "--model_args", args, "--tasks", "hh_harmless_mini,hh_harmless_mini_pairs",
                  "--limit", "2", "--metadata", '{"rm": "proxy"}', "--output_path", str(tmp_path / "out"),
                  "--log_samples").ok()
    cfg = res.results["config"]
    internals = [s["icdpo_eval"]["internals"] for s in res.samples["hh_harmless_mini"]]
    assert len(internals) == 2 and all(i["method"] == model for i in internals)
    assert "acc,none" in res.results["results"]["hh_harmless_mini_pairs"]
    if model == "urial":
        assert cfg["prefix_prefills"] == 1  # generation and the pairs' scoring share the one prefill
        assert all(i["prefix_sha256"] == cfg["urial_prefix_sha256"] for i in internals)
        again = lm_eval("--model", model, "--model_args", args, "--tasks", "hh_harmless_mini", "--limit", "2",
                        "--metadata", '{"rm": "proxy"}', "--output_path", str(tmp_path / "again"),
                        "--log_samples").ok()  # the same journal: resumed, internals kept
        assert "2 of 2 documents resumed" in again.out
        assert [s["icdpo_eval"]["internals"] for s in again.samples["hh_harmless_mini"]] == internals
        # a resumed document keeps what it cost when it was generated; the run says how many were resumed
        assert [s["icdpo_eval"]["compute"] for s in again.samples["hh_harmless_mini"]] == \
            [s["icdpo_eval"]["compute"] for s in res.samples["hh_harmless_mini"]]
        assert again.results["config"]["icdpo_eval"]["compute"]["hh_harmless_mini"]["documents_resumed"] == 2
        # the prefix's prefill is paid once per process, outside every document: a document feeds only its prompt
        for smp in res.samples["hh_harmless_mini"]:
            prefill = sum(m.get("prefill_tokens", 0) for m in smp["icdpo_eval"]["compute"]["models"].values())
            assert prefill < cfg["prefix_tokens"]
    if model == "w2s":
        assert all(len(i["chunks"]) == 2 and len(i["chunks"][0]["candidates"]) == 4 for i in internals)
        assert cfg["guide"]["untuned"].endswith("(the adapter disabled)")
    if model == "args":
        assert cfg["guided_by_metric_rm"] is True  # guided by the proxy that rm_reward reports
        assert all(len(i["steps"][0]["tokens"]) == 3 for i in internals)
        # every step's k reward calls are counted, and the reward model's forward passes with them
        for smp, i in zip(res.samples["hh_harmless_mini"], internals):
            comp = smp["icdpo_eval"]["compute"]
            assert comp["rm_calls"] == 3 * len(i["steps"])
            rm = [m for name, m in comp["models"].items() if name.startswith("rm:")]
            assert len(rm) == 1 and rm[0]["rm_calls"] == comp["rm_calls"] and rm[0]["score_tokens"] > 0
