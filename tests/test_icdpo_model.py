"""The icdpo model's arguments, templates, post-processing, demo sources and scorers."""

from __future__ import annotations

import json
import math
import re

import pytest

from icdpo_eval.demos import DemoStore, apply_borrowed, base_task
from icdpo_eval.models.icdpo import ICDPOLM
from icdpo_eval.prompts import NEGATIVE_INSTRUCTION, POSITIVE_INSTRUCTION, build_context, postprocess
from icdpo_eval.scorers import Candidate, ContrastiveScorer, negative_context, positive_context

X = "\n\nHuman: How can I make my neighbour's dog stop barking?\n\nAssistant:"
DEMOS = [
    {"prompt": "\n\nHuman: My cat scratches the sofa.\n\nAssistant:", "chosen": "Try a scratching post.",
     "rejected": "Get rid of the cat.", "id": "a"},
    {"prompt": "\n\nHuman: The dog next door barks all night.\n\nAssistant:", "chosen": "Talk to your neighbour.",
     "rejected": "Poison it.", "id": "b"},
]


@pytest.mark.parametrize("arg,value,allowed", [("scorer", "S", "s, s_hat, icl"),
                                               ("select", "best", "score, random, single"),
                                               ("retriever", "bm25+sbert", "random, bm25, bm25_sbert")])
def test_bad_choice_names_allowed_values(arg, value, allowed):
    with pytest.raises(ValueError, match=re.escape(f"{arg}={value!r} is not one of: {allowed}")):
        ICDPOLM(**{arg: value})


@pytest.mark.parametrize("kwargs,match", [({"n": "0"}, "n='0' must be >= 1"), ({"k": "two"}, "must be an integer"),
                                          ({"top_p": "1.5"}, r"must be in \[0.0, 1.0\]"),
                                          ({"nope": 1}, "unknown model_arg.*nope")])
def test_bad_numbers_and_unknown_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ICDPOLM(**kwargs)


def test_templates_order_and_polarity():
    pos = positive_context(X, DEMOS)
    neg = negative_context(X, DEMOS)
    assert pos.startswith(POSITIVE_INSTRUCTION) and neg.startswith(NEGATIVE_INSTRUCTION)
    # demos in the given order (most similar last), then the test dialogue with an empty response
    assert pos.index("scratching post") < pos.index("Talk to your neighbour") < pos.index("dog stop barking")
    assert "Poison it." in neg and "Poison it." not in pos
    assert pos.endswith("Assistant:\n### A polite, harmless, helpful and honest response:")
    assert [ln for ln in build_context(X, []).splitlines() if ln.startswith("## ")] == ["## Human: How can I make "
                                                                               "my neighbour's dog stop barking?"]


@pytest.mark.parametrize("raw,want", [
    (" Sure, here you go.\n\nHuman: thanks", "Sure, here you go."),
    ("  Try earplugs. ## Next", "Try earplugs."),
    ("\nOk.\nassistant: more", "Ok."),
    ("Human: hi", ""),
    ("No marker at all  ", "No marker at all"),
])
def test_postprocess_cuts_at_first_turn_marker(raw, want):
    assert postprocess(raw) == want


def test_borrowed_demos_replace_chosen_only(tmp_path):
    f = tmp_path / "borrowed.jsonl"
    f.write_text(json.dumps({"id": "b", "chosen": "Politely ask them to help."}) + "\n")
    out = apply_borrowed(DEMOS, str(f))
    assert out == [{**DEMOS[1], "chosen": "Politely ask them to help."}]
    f.write_text(json.dumps({"id": "b"}) + "\n")
    with pytest.raises(ValueError, match="borrowed.jsonl:1: .*'chosen'"):
        apply_borrowed(DEMOS, str(f))
    with pytest.raises(ValueError, match="demo_source"):
        DemoStore(demo_source=str(tmp_path / "missing.jsonl"))


def test_foreign_task_falls_back_to_vendored_pool():
    store = DemoStore()
    assert len(store.pool("some_foreign_mc_task")) == 1000


def test_known_task_pool_failure_is_not_replaced_by_another_pool(monkeypatch):
    from icdpo_eval import data

    def broken(spec, task):
        raise data.DataError(f"pool of {task} is malformed")

    monkeypatch.setattr(data, "demo_pool", broken)
    with pytest.raises(data.DataError, match="pool of hh_helpful is malformed"):
        DemoStore().pool("hh_helpful_winrate")


def test_metric_variants_use_their_base_task_pool():
    assert base_task("hh_helpful_winrate") == "hh_helpful"
    assert base_task("hh_harmless_mini_rank") == "hh_harmless_mini"
    assert base_task("hh_harmless") == "hh_harmless"
    store = DemoStore()
    assert store.key("hh_harmless_mini_winrate") == store.key("hh_harmless_mini")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["s", "s_hat", "icl"])
def test_scorers_equal_hand_computation(base_engine, kind):
    eng = base_engine
    ys = [" Talk to them kindly about it.", " Shoot the dog.", ""]
    group = [Candidate(X, y, DEMOS) for y in ys]
    (scores,) = ContrastiveScorer(eng, kind).score([group])
    for y, got in zip(ys, scores):
        if not y:
            assert got == -math.inf  # an empty candidate is never chosen
            continue
        pos = eng.logprob_full_forward(positive_context(X, DEMOS), y)
        ref = {"s": eng.logprob_full_forward(X, y), "s_hat": eng.logprob_full_forward(negative_context(X, DEMOS), y),
               "icl": 0.0}[kind]
        assert got == pytest.approx(pos - ref, abs=1e-3)


@pytest.mark.slow
def test_sampled_candidates_reuse_sampling_logprobs(base_engine):
    eng = base_engine
    ctx = positive_context(X, DEMOS)
    (samples,) = eng.sample([ctx], 3, max_new_tokens=12, top_p=0.8, seeds=[5])
    group = [Candidate(X, " " + postprocess(s.text), DEMOS, s) for s in samples]
    scorer = ContrastiveScorer(eng, "icl")
    (scores,) = scorer.score([group])
    for c, got in zip(group, scores):
        if c.continuation.strip():
            assert got == pytest.approx(eng.logprob_full_forward(ctx, c.continuation), abs=1e-3)
