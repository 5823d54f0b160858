"""The icdpo model's arguments, templates, post-processing, demo sources and scorers."""

from __future__ import annotations

import json
import math
import re

import pytest

from icdpo_eval.errors import OptionError
from icdpo_eval.method.demos import DemoStore, apply_borrowed, base_task
from icdpo_eval.method.prompts import HH, SYNTHETIC, dialogue, postprocess, template_for
from icdpo_eval.method.scorers import Candidate, ContrastiveScorer, negative_context, positive_context
from icdpo_eval.models.icdpo import ICDPOLM

X = "\n\nHuman: How can I make my neighbour's dog stop barking?\n\nAssistant:"
DEMOS = [
    {"prompt": "\n\nHuman: My cat scratches the sofa.\n\nAssistant:", "chosen": "Try a scratching post.",
     "rejected": "Get rid of the cat.", "id": "a"},
    {"prompt": "\n\nHuman: The dog next door barks all night.\n\nAssistant:", "chosen": "Talk to your neighbour.",
     "rejected": "Poison it.", "id": "b"},
]


@pytest.mark.parametrize("arg,value,allowed", [("scorer", "S", "s | s_hat | icl"),
                                               ("select", "best", "score | random | single"),
                                               ("retriever", "bm25+sbert", "random | bm25 | bm25_sbert"),
                                               ("dialogue", "raw", "pro | verbatim")])
def test_bad_choice_names_allowed_values(arg, value, allowed):
    with pytest.raises(OptionError, match=re.escape(f"{arg}={value!r}: must be {allowed}")):
        ICDPOLM(**{arg: value})


@pytest.mark.parametrize("kwargs,match", [({"n": "0"}, "n='0': must be integer >= 1"),
                                          ({"k": "two"}, "k='two': must be integer >= 0"),
                                          ({"top_p": "1.5"}, r"top_p='1.5': must be number in \[0, 1\]"),
                                          ({"nope": 1}, "unknown --model icdpo model_arg.*nope.*takes: scorer"),
                                          ({"preset": "legacy"}, "preset='legacy': must be paper"),
                                          ({"template": "legacy"}, "unknown --model icdpo model_arg.*template")])
def test_bad_numbers_and_unknown_args(kwargs, match):
    with pytest.raises(OptionError, match=match):
        ICDPOLM(**kwargs)


def test_released_template_structure_byte_for_byte():
    """The released structure (F2-Song/ICDPO load_data/hh.py): instruction line, then per demo
    "\n\n##" + dialogue (no trailing Assistant:) + "\n###Generate a **...** response: " + response, then the
    test dialogue with an empty response. Only the instruction sentence is our own wording."""
    pos = positive_context(X, DEMOS)
    cue = "###Generate a **polite/harmless/helpful/honest** response:"
    want = (HH.positive_instruction
            + "\n\n##\n\nHuman: My cat scratches the sofa.\n" + cue + " Try a scratching post."
            + "\n\n##\n\nHuman: The dog next door barks all night.\n" + cue + " Talk to your neighbour."
            + "\n\n##\n\nHuman: How can I make my neighbour's dog stop barking?\n" + cue)
    assert pos == want
    assert HH.positive_instruction.startswith("#") and "**polite/harmless/helpful/honest**" in HH.positive_instruction
    neg = negative_context(X, DEMOS)
    ncue = "###Generate an **offensive/harmful/helpless/misleading** response:"
    assert neg == (HH.negative_instruction
                   + "\n\n##\n\nHuman: My cat scratches the sofa.\n" + ncue + " Get rid of the cat."
                   + "\n\n##\n\nHuman: The dog next door barks all night.\n" + ncue + " Poison it."
                   + "\n\n##\n\nHuman: How can I make my neighbour's dog stop barking?\n" + ncue)
    assert "**offensive/harmful/helpless/misleading**" in HH.negative_instruction
    # the zero-shot context: the dialogue + "\n\nAssistant:" (released get_base_context)
    assert HH.zero_shot(X) == X
    assert HH.zero_shot(X + "  ") == X
    assert dialogue("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:") == \
        "\n\nHuman: a\n\nAssistant: b\n\nHuman: c"


def test_synthetic_template_is_the_released_variant():
    post = "\n\nHuman: Write a haiku about rain.\n\nAssistant:"
    demos = [{"prompt": "\n\nHuman: Name a fruit.\n\nAssistant:", "chosen": "Apple.", "rejected": "No."}]
    cue = "###Generate a **polite/harmless/helpful/honest** response:"
    assert positive_context(post, demos, SYNTHETIC) == (
        SYNTHETIC.positive_instruction + "\n\n##\n\nHuman: Name a fruit.\n" + cue + " Apple."
        + "\n\n##\n\nHuman: Write a haiku about rain.\n" + cue)
    assert "human post" in SYNTHETIC.positive_instruction
    assert SYNTHETIC.zero_shot(post) == "Human: Write a haiku about rain.\n\nAssistant:"
    assert template_for("synthetic_gpt") is SYNTHETIC and template_for("synthetic_gpt_pairs") is SYNTHETIC
    assert template_for("hh_harmless_mini") is HH and template_for("some_foreign_task") is HH


@pytest.mark.parametrize("raw,want", [
    (" Sure, here you go.\n\nHuman: thanks", "Sure, here you go."),
    ("  Try earplugs. ## Next", "Try earplugs."),
    ("\nOk.\nassistant: more", "Ok."),
    ("Human: hi", ""),
    ("No marker at all  ", "No marker at all"),
    ("Two lines \nkept as sampled", "Two lines \nkept as sampled"),
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
    from icdpo_eval.data import datasets as data

    def broken(spec, task, dialogue="verbatim"):
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


@pytest.mark.parametrize("kind", ["s", "s_hat", "icl"])
@pytest.mark.parametrize("score_eos", [True, False])
def test_scorers_equal_hand_computation(base_engine, kind, score_eos):
    eng = base_engine
    eos = eng.tok.eos_token if score_eos else ""
    ys = [" Talk to them kindly about it.", " Shoot the dog.", " "]
    group = [Candidate(X, y, DEMOS) for y in ys]
    (scores,) = ContrastiveScorer(eng, kind, score_eos=score_eos).score([group])
    for y, got in zip(ys, scores):
        # released: log p(" " + y + EOS | context); an empty candidate (" ") is scored like any other
        pos = eng.logprob_full_forward(positive_context(X, DEMOS), y + eos)
        ref = {"s": eng.logprob_full_forward(X, y + eos),
               "s_hat": eng.logprob_full_forward(negative_context(X, DEMOS), y + eos), "icl": 0.0}[kind]
        assert got == pytest.approx(pos - ref, abs=1e-3)
        assert math.isfinite(got)
    (skipped,) = ContrastiveScorer(eng, kind, empty="skip").score([group])
    # the others unchanged (a batch of 2 instead of 3 pads differently: fp32 kernels differ in the last bits)
    assert skipped[2] == -math.inf and skipped[:2] == pytest.approx(
        ContrastiveScorer(eng, kind).score([group])[0][:2], abs=1e-4)


def test_sampled_candidates_reuse_sampling_logprobs(base_engine):
    """The plus term of a sampled candidate comes free from the sampling pass when its text re-tokenizes to a
    prefix of the sampled tokens: here each candidate is the text of the longest such proper prefix (the twin
    samples rare tokens, whose text need not re-tokenize the same), so every candidate is reused, with and
    without the EOS term, and equals a plain forward pass."""
    eng = base_engine
    ctx = positive_context(X, DEMOS)
    # temperature: the twin's flat distribution made as peaked as a trained model's (test_engine.PEAKED)
    (samples,) = eng.sample([ctx], 3, max_new_tokens=12, top_p=0.8, temperature=0.02, seeds=[5])

    def round_trip(s):  # the text of the longest proper prefix of s's tokens that re-tokenizes to itself
        return next(eng.decode(s.token_ids[:j]) for j in range(len(s.token_ids) - 1, 0, -1)
                    if eng.encode_continuation(eng.decode(s.token_ids[:j])) == s.token_ids[:j])

    group = [Candidate(X, round_trip(s), DEMOS, s) for s in samples]
    for score_eos in (True, False):
        scorer = ContrastiveScorer(eng, "icl", score_eos=score_eos)
        (scores,) = scorer.score([group])
        eos = eng.tok.eos_token if score_eos else ""
        for c, got in zip(group, scores):
            assert got == pytest.approx(eng.logprob_full_forward(ctx, c.continuation + eos), abs=1e-4)
        assert scorer.reused == 3  # log pi(y [+ EOS] | d+, x) came from the sampling pass, for each candidate
