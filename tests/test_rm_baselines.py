"""rm_bon and rm_aug: argument checks, rm_aug with one block == rm_bon, both through the stock lm_eval CLI.

On the tiny twins of the base model and the teacher: every property here is an equality between the cached,
blockwise path and plain forward passes (or bookkeeping), which random weights exercise as well as trained ones."""

from __future__ import annotations

import pytest
from _rm_checks import check_rm_reward, rm_items
from test_teacher import X, teacher  # noqa: F401 (the session fixture: the teacher's tiny twin)

from icdpo_eval.baselines.rm_aug import RMAugLM, _AcceptedPrefix, _Block, blockwise_decode
from icdpo_eval.baselines.rm_bon import RMBoNLM
from icdpo_eval.engine import SamplingParams
from icdpo_eval.method.best_of_n import sample_and_select
from icdpo_eval.method.prompts import TURN_MARKERS, zero_shot_context
from icdpo_eval.method.teacher import TeacherError, TeacherScorer

PROMPTS = [X, "\n\nHuman: How do I get my neighbour's dog to stop barking at night?\n\nAssistant:"]


@pytest.mark.parametrize("cls,kwargs,match", [
    (RMBoNLM, {"teacher": "openai:gpt-4o"}, "API model.*no log-probabilities"),
    (RMBoNLM, {"n": "0"}, "n='0': must be integer >= 1"),
    (RMBoNLM, {"normalize": "maybe"}, "normalize='maybe': must be true | false"),
    (RMBoNLM, {"block_size": "4"}, "unknown --model rm_bon model_arg.*block_size"),
    (RMBoNLM, {"teacher": "embedded:nope"}, "teacher='embedded:nope': unknown embedded model"),
    (RMAugLM, {"block_size": "0"}, "block_size='0': must be integer >= 1"),
    (RMAugLM, {"scorer": "s"}, "unknown --model rm_aug model_arg.*scorer"),
])
def test_bad_model_args_fail_before_loading(cls, kwargs, match):
    with pytest.raises((ValueError, TeacherError), match=match):
        cls(**kwargs)


def test_rm_aug_with_one_block_equals_rm_bon(base_engine, teacher):  # noqa: F811
    """Same seeds and sampler -> identical candidates; one block (block_size >= max_new_tokens) -> the
    teacher scores the same texts in the same context -> the same answer. rm_bon's scores are plain teacher
    forward passes of each response given the teacher's chat context."""
    params = SamplingParams(max_new_tokens=6, top_p=0.8, temperature=1.0, do_sample=True, stop=TURN_MARKERS)
    for p, normalize, block in [(PROMPTS[0], False, 6), (PROMPTS[1], False, 64), (PROMPTS[0], True, 6)]:
        bon = sample_and_select(base_engine, TeacherScorer(teacher, normalize), [p], [zero_shot_context(p)], [[]],
                                n=3, params=params, seed=5)[0]
        aug = blockwise_decode(base_engine, teacher, p, n=3, block_size=block, normalize=normalize, params=params,
                               seed=5)
        assert aug.blocks == 1 and aug.text == bon.text
        assert aug.scores[0] == pytest.approx(bon.scores, abs=1e-4)
        for cand, sc in zip(bon.candidates, bon.scores):
            if cand:
                ref = teacher.engine.logprob_full_forward(teacher.context(p), cand)
                n_tok = len(teacher.engine.encode_continuation(cand))
                assert sc == pytest.approx(ref / n_tok if normalize else ref, abs=1e-4)


def test_rm_aug_several_blocks_is_deterministic(base_engine, teacher):  # noqa: F811
    kw = dict(n=2, block_size=3, params=SamplingParams(max_new_tokens=9, top_p=0.9, stop=TURN_MARKERS), seed=11)
    a = blockwise_decode(base_engine, teacher, PROMPTS[1], **kw)
    b = blockwise_decode(base_engine, teacher, PROMPTS[1], **kw)
    assert a.text == b.text and a.scores == b.scores and 2 <= a.blocks <= 3
    assert all(len(s) == 2 for s in a.scores)
    assert "Human:" not in a.text
    # the accumulated (cached, blockwise) score of the answer is the teacher's full-pass score of its text
    # (up to the tokenization-boundary approximation, exact for this answer)
    assert max(a.scores[-1]) == pytest.approx(teacher.score([PROMPTS[1]], [[a.text]])[0][0], abs=1e-3)


def test_rm_aug_accepted_prefix_extends_or_rescores(teacher):  # noqa: F811
    """A candidate that extends the accepted text is scored from the cached session (accepted log-prob + its
    tail's); one that rewrites it is rescored by a full pass, and accepting it rebuilds the teacher session.
    Either way the total is the teacher's full-pass score of the whole response."""
    p = PROMPTS[1]

    def full(text):
        return teacher.engine.logprob_full_forward(teacher.context(p), text)

    acc = _AcceptedPrefix(teacher, p)
    first = teacher.as_continuation("Try a")
    sc = acc.score([first, ""])
    assert sc.rescored == 0 and set(sc.totals) == {0}
    assert sc.ranking(2, False) == [sc.totals[0][0], float("-inf")]
    acc.accept(_Block([1, 2], "Try a", False), first, sc, 0)
    assert acc.base_ids == [1, 2] and acc.text == first and (acc.logprob, acc.n_tokens) == sc.totals[0]

    extended, rewritten = first + " white noise machine.", teacher.as_continuation("Maybe a bark collar.")
    sc = acc.score([extended, "", rewritten])
    assert sc.rescored == 1 and set(sc.totals) == {0, 2} and set(sc.extensions) == {0}
    for j, text in [(0, extended), (2, rewritten)]:
        assert sc.totals[j][0] == pytest.approx(full(text), abs=1e-3)
    (lp, n_tok) = sc.totals[2]
    assert n_tok == len(teacher.engine.encode_continuation(rewritten))
    assert sc.ranking(3, True) == [sc.totals[0][0] / sc.totals[0][1], float("-inf"), lp / n_tok]

    acc.accept(_Block([3], "Maybe a bark collar.", False), rewritten, sc, 2)  # rebuilds the teacher session
    assert acc.base_ids == [1, 2, 3] and acc.text == rewritten and (acc.logprob, acc.n_tokens) == (lp, n_tok)
    sc = acc.score([rewritten + " It works."])
    assert sc.rescored == 0 and sc.totals[0][0] == pytest.approx(full(rewritten + " It works."), abs=1e-3)


@pytest.mark.parametrize("model", ["rm_bon", "rm_aug"])
def test_lm_eval_cli(pipeline, model):
    res = pipeline(model)
    cfg = res.results["config"]
    assert cfg["method"] == model and cfg["teacher"] == "embedded:teacher" and cfg["n"] == 2
    assert cfg["normalize"] is False and cfg.get("block_size") == (4 if model == "rm_aug" else None)
    check_rm_reward(res.results["results"]["hh_harmless_mini"], rm_items(res.samples["hh_harmless_mini"]), 2)
