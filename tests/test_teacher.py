"""The teacher (chat context, GPTScore-style scores, API teacher = generation only) and the engine Session."""

from __future__ import annotations

import math

import pytest
import torch

from icdpo_eval.engine import SamplingParams
from icdpo_eval.method.prompts import TURN_MARKERS, postprocess
from icdpo_eval.method.scorers import Candidate
from icdpo_eval.method.teacher import APITeacher, TeacherError, TeacherScorer, chat_messages, load_teacher

X = "\n\nHuman: What's the capital of France?\n\nAssistant: Paris.\n\nHuman: And of Italy?\n\nAssistant:"
RESPONSES = ["Rome.", "I'm sorry, I can't help with that.", "The capital of Italy is Rome, a city of 2.8 million."]


@pytest.fixture(scope="session")
def teacher(twins_dir):
    """The tiny twin of the embedded SmolLM2 teacher, loaded by its name ``embedded:teacher`` through the declared
    setting ``ICDPO_EMBEDDED_DIR`` (a session fixture is set up before the per-test one that sets it)."""
    from icdpo_eval.method.teacher import HFTeacher

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICDPO_EMBEDDED_DIR", str(twins_dir))
        t = HFTeacher.load(device="cpu", dtype="float32")
    assert t.engine.model.config.num_hidden_layers == 2  # the twin, not the real 30-layer model
    return t


def full_forward_ids(engine, ids: list[int], n_cont: int) -> float:
    """Plain uncached reference: log p(ids[-n_cont:] | ids[:-n_cont])."""
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([ids]), logits_to_keep=n_cont + 1).logits[0, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[-n_cont:])[:, None]).squeeze(-1)
    return float(lp.sum())


def test_chat_messages_from_hh_dialogue():
    assert chat_messages(X) == [{"role": "user", "content": "What's the capital of France?"},
                                {"role": "assistant", "content": "Paris."},
                                {"role": "user", "content": "And of Italy?"}]
    assert chat_messages("Write a haiku.") == [{"role": "user", "content": "Write a haiku."}]


def test_api_teacher_cannot_score():
    t = load_teacher("openai:gpt-3.5-turbo")
    assert isinstance(t, APITeacher) and t.is_api
    for call in (lambda: TeacherScorer(t), lambda: t.score([X], [RESPONSES]), lambda: t.context(X)):
        with pytest.raises(TeacherError, match="API model.*no log-probabilities"):
            call()
    with pytest.raises(TeacherError, match="needs a model name"):
        load_teacher("openai:")


def test_teacher_context_is_its_chat_template(teacher):
    ctx = teacher.context(X)
    assert ctx.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nAnd of Italy?<|im_end|>" in ctx
    assert "Human:" not in ctx


def test_teacher_score_equals_full_forward_and_normalizes(teacher):
    eng = teacher.engine
    got = teacher.score([X], [RESPONSES + [""]])[0]
    norm = teacher.score([X], [RESPONSES], normalize=True)[0]
    via_scorer = TeacherScorer(teacher).score([[Candidate(X, " " + r) for r in RESPONSES]])[0]
    for r, v, vn, vs in zip(RESPONSES, got, norm, via_scorer):
        ref = eng.logprob_full_forward(teacher.context(X), r)
        assert abs(v - ref) < 1e-4 and abs(vs - ref) < 1e-4
        assert vn == pytest.approx(ref / len(eng.encode_continuation(r)), abs=1e-5)
    assert got[-1] == -math.inf  # an empty response is never the best


def test_teacher_generate_is_greedy_and_cut(teacher, monkeypatch):
    eng, hi = teacher.engine, "\n\nHuman: hi\n\nAssistant:"
    a = teacher.generate([X], max_new_tokens=8)
    b = teacher.generate([X, hi], max_new_tokens=8)
    # greedy over the chat context (batch-invariant), stopped at the turn markers and post-processed
    (s,), = eng.sample([teacher.context(X)], 1, max_new_tokens=8, do_sample=False, stop=TURN_MARKERS)
    assert a[0] == b[0] == postprocess(s.text)
    sampled = teacher.generate([X], max_new_tokens=8, do_sample=True)
    assert sampled == teacher.generate([X, hi], max_new_tokens=8, do_sample=True)[:1] and sampled[0]
    # cut: a reply that goes on into the next turn (forced tokens; the twin's greedy reply is blank lines)
    reply = eng.encode_continuation(" Rome.\n\nHuman: And Spain?\n\nAssistant: Madrid.")
    sample = eng.sample
    monkeypatch.setattr(eng, "sample", lambda contexts, n, **kw: sample(
        contexts, n, forced=[reply] * (len(contexts) * n), **kw))
    assert teacher.generate([X, hi], max_new_tokens=len(reply)) == ["Rome.", "Rome."]


def test_session_cached_scores_equal_full_forward(teacher):
    eng = teacher.engine
    ctx = eng.encode_context(teacher.context(X))
    s = eng.session(ctx)
    conts = [eng.encode_continuation(r) for r in RESPONSES]
    assert s.logprobs(conts + [[]]) == pytest.approx([full_forward_ids(eng, ctx + c, len(c)) for c in conts] + [0.0],
                                                     abs=1e-4)
    s.append(conts[0])  # an accepted block, then more candidates: only new tokens are fed
    more = [eng.encode_continuation(" It is"), eng.encode_continuation(" Bye")]
    for c, v in zip(more, s.logprobs(more)):
        assert abs(v - full_forward_ids(eng, ctx + conts[0] + c, len(c))) < 1e-4
    assert len(s) == len(ctx) + len(conts[0])


def test_session_blocks_on_base_model_past_sliding_window(base_engine):
    """Gemma-3's sliding-window layer (the twin's window: 16 tokens; the real model's: 512): sample/accept blocks
    from just inside the window to past it; every cached log-prob (sampled tokens and scored continuations)
    equals a plain full forward pass, and the first block equals Engine.sample with the same seed."""
    eng = base_engine
    window = eng.model.config.sliding_window
    assert "sliding_attention" in eng.model.config.layer_types and window < 64
    ctx = eng.encode_context(X * 20)[:window - 7]
    s = eng.session(ctx, seed=9)
    # temperature: the twin's flat distribution made as peaked as a trained model's (test_engine.PEAKED)
    first = s.sample(2, 4, top_p=0.9, temperature=0.02)
    ref = eng.sample_ids([ctx], 2, SamplingParams(max_new_tokens=4, top_p=0.9, temperature=0.02), [9])[0]
    assert [x.token_ids for x in first] == [x.token_ids for x in ref] and first[0].token_ids != first[1].token_ids
    s.accept(1)
    second = s.sample(2, 6, top_p=0.9, temperature=0.02)
    s.accept(0)
    seq = ctx + first[1].token_ids
    assert sum(second[0].token_logprobs) == pytest.approx(full_forward_ids(eng, seq + second[0].token_ids, 6),
                                                          abs=1e-4)
    assert s.ids == seq + second[0].token_ids and len(s) > window
    conts = [eng.encode_continuation(" Rome."), eng.encode_continuation(" I am not sure")]
    for c, v in zip(conts, s.logprobs(conts)):
        assert abs(v - full_forward_ids(eng, s.ids + c, len(c))) < 1e-4
    s.sample(2, 1)
    with pytest.raises(RuntimeError, match="accept"):
        s.append([1])
