"""The teacher (chat context, GPTScore-style scores, API teacher = generation only) and the engine Session."""

from __future__ import annotations

import math

import pytest
import torch

from icdpo_eval.engine import SamplingParams
from icdpo_eval.method.scorers import Candidate
from icdpo_eval.method.teacher import APITeacher, TeacherError, TeacherScorer, chat_messages, load_teacher

X = "\n\nHuman: What's the capital of France?\n\nAssistant: Paris.\n\nHuman: And of Italy?\n\nAssistant:"
RESPONSES = ["Rome.", "I'm sorry, I can't help with that.", "The capital of Italy is Rome, a city of 2.8 million."]


@pytest.fixture(scope="session")
def teacher():
    from icdpo_eval.method.teacher import HFTeacher

    return HFTeacher.load(device="cpu", dtype="float32")


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


@pytest.mark.slow
def test_teacher_context_is_its_chat_template(teacher):
    ctx = teacher.context(X)
    assert ctx.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nAnd of Italy?<|im_end|>" in ctx
    assert "Human:" not in ctx


@pytest.mark.slow
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


@pytest.mark.slow
def test_teacher_generate_is_greedy_and_cut(teacher):
    a = teacher.generate([X], max_new_tokens=8)
    b = teacher.generate([X, "\n\nHuman: hi\n\nAssistant:"], max_new_tokens=8)
    assert a[0] == b[0] and a[0] and "Human:" not in a[0]


@pytest.mark.slow
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


@pytest.mark.slow
def test_session_blocks_on_base_model_past_sliding_window(base_engine):
    """Gemma-3 (sliding window 512): sample/accept blocks on a >512-token sequence; every cached log-prob
    (sampled tokens and scored continuations) equals a plain full forward pass, and the first block equals
    Engine.sample with the same seed."""
    eng = base_engine
    ctx = eng.encode_context(X * 20)[:505]
    s = eng.session(ctx, seed=7)
    first = s.sample(2, 4, top_p=0.9)
    ref = eng._sample_batch([ctx], [7], 2, SamplingParams(max_new_tokens=4, top_p=0.9))[0]
    assert [x.token_ids for x in first] == [x.token_ids for x in ref]
    s.accept(1)
    second = s.sample(2, 6, top_p=0.9)
    s.accept(0)
    seq = ctx + first[1].token_ids
    assert sum(second[0].token_logprobs) == pytest.approx(full_forward_ids(eng, seq + second[0].token_ids, 6),
                                                          abs=1e-4)
    assert s.ids == seq + second[0].token_ids and len(s) > 512
    conts = [eng.encode_continuation(" Rome."), eng.encode_continuation(" I am not sure")]
    for c, v in zip(conts, s.logprobs(conts)):
        assert abs(v - full_forward_ids(eng, s.ids + c, len(c))) < 1e-4
    s.sample(2, 1)
    with pytest.raises(RuntimeError, match="accept"):
        s.append([1])
