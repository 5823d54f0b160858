"""What every row spends (issue 32): the engine's counts against a hand count on the tiny twin, a reused draw counted
at what drawing it cost, each document's record in its sample and the run's totals in ``config.icdpo_eval``."""

from __future__ import annotations

import pytest
from _inproc import pipeline

from icdpo_eval.engine import SamplingParams
from icdpo_eval.models import compute
from icdpo_eval.runtime import METER

X = "\n\nHuman: How do I bake bread at home without yeast?\n\nAssistant:"


def spent(engine, fn):
    snap = METER.snapshot()
    out = fn()
    return out, METER.since(snap).get(engine.label, {})


def test_sampling_counts_equal_a_hand_count(base_engine):
    """A prompt of P tokens, N = 3 candidates of known lengths (replayed: 3, 5 and 1 tokens, then EOS): one prefill
    of P positions, its cache expanded to 3 rows ((N - 1) x P positions read from it), then one decode position per
    row and step for every token fed back (each row feeds its 3 / 5 / 1 tokens: 9 positions over 5 steps), 12 tokens
    drawn (EOS included). Nothing more is processed."""
    eng = base_engine
    ctx = eng.encode_context(X)
    P = len(ctx)
    toks = eng.encode_continuation(" Mix flour water salt and baking soda then bake it hot")
    forced = [toks[:3], toks[:5], toks[:1]]
    samples, got = spent(eng, lambda: eng.sample_ids([ctx], 3, SamplingParams(max_new_tokens=8), [1],
                                                     forced=forced)[0])
    assert [len(s.token_ids) for s in samples] == [3, 5, 1] and all(s.stop_reason == "eos" for s in samples)
    want = {"calls": 1 + 5, "prefill_tokens": P, "decode_tokens": 3 + 5 + 1, "cached_tokens": 2 * P,
            "generated_tokens": 4 + 6 + 2}
    assert got == want
    assert eng.draw_cost(P, samples) == want  # what a reused draw is counted at
    # stopped by the token limit: the last token drawn is never fed
    lim, got = spent(eng, lambda: eng.sample_ids([ctx], 2, SamplingParams(max_new_tokens=4), [1],
                                                 forced=[toks[:6], toks[:6]])[0])
    assert [s.stop_reason for s in lim] == ["length", "length"]
    assert got == {"calls": 1 + 3, "prefill_tokens": P, "decode_tokens": 2 * 3, "cached_tokens": P,
                   "generated_tokens": 2 * 4} == eng.draw_cost(P, lim)


def test_scoring_counts_equal_a_hand_count(base_engine):
    """N continuations of lengths 2, 4, 3 under one context of P tokens: one prefill (P positions), one scoring pass
    over 3 rows x (4 - 1) positions (the first token of each is scored from the prefill's logits), 3 of them
    padding; the context's cache read by 2 more rows."""
    eng = base_engine
    ctx = eng.encode_context(X)
    P = len(ctx)
    toks = eng.encode_continuation(" Mix flour water salt and baking soda")
    conts = [toks[:2], toks[:4], toks[:3]]
    _, got = spent(eng, lambda: eng.logprobs_ids([ctx], [conts]))
    assert got == {"calls": 2, "prefill_tokens": P, "score_tokens": 3 * 3, "padding_tokens": 3 * 3 - (1 + 3 + 2),
                   "cached_tokens": 2 * P}
    # an empty continuation costs nothing
    _, got = spent(eng, lambda: eng.logprobs_ids([ctx], [[[]]]))
    assert got == {}


def test_a_session_counts_its_blocks(base_engine):
    """RM-Aug's growing sequence: the context fed once, each block's rows expanded from it, each scoring pass over a
    copy of the cache."""
    eng = base_engine
    ctx = eng.encode_context(X)
    P = len(ctx)
    s = eng.session(ctx, seed=3)
    samples, got = spent(eng, lambda: s.sample(2, 3, temperature=0.5))
    fed = sum(len(x.token_ids) if x.stop_reason == "eos" else len(x.token_ids) - 1 for x in samples)
    assert got["prefill_tokens"] == P and got["cached_tokens"] == P and got["decode_tokens"] == fed
    s.accept(0)
    _, got = spent(eng, lambda: s.logprobs([[5, 6], [7]]))
    assert got["cached_tokens"] == 2 * len(s) and got["score_tokens"] == 2 * 1


def test_record_shares_a_batch_and_adds_reused_cost():
    delta = {"base": {"calls": 6, "prefill_tokens": 40, "decode_tokens": 10, "score_tokens": 8, "padding_tokens": 2,
                      "generated_tokens": 12, "cached_tokens": 80, "reused_calls": 4, "reused_prefill_tokens": 20,
                      "reused_decode_tokens": 6, "reused_generated_tokens": 9},
             "rm:proxy": {"rm_calls": 4}}
    rec = compute.record(delta, 3.0, share=2)
    assert rec["forward_tokens"] == (40 + 10 + 8) / 2 and rec["forward_calls"] == 3 and rec["rm_calls"] == 2
    assert rec["seconds"] == 1.5 and rec["documents_in_batch"] == 2 and rec["generated_tokens"] == 6
    assert rec["reused"] == {"generated_tokens": 4.5, "forward_calls": 2, "forward_tokens": 13}
    assert compute.cost(rec, "forward_tokens") == 29 + 13 and compute.cost(rec, "seconds") == 1.5
    assert compute.cost(None, "forward_tokens") is None
    tot = compute.summarise([rec, compute.record({"base": {"calls": 1, "prefill_tokens": 5}}, 1.0)], resumed=1)
    assert tot["total"]["forward_tokens"] == 29 + 5 and tot["per_document"]["forward_tokens"] == 17
    assert tot["documents"] == 2 and tot["documents_resumed"] == 1 and tot["reused"]["forward_tokens"] == 13
    assert tot["cost_per_document"]["forward_tokens"] == (34 + 13) / 2


@pytest.mark.parametrize("name", ["rm_bon", "rm_aug"])
def test_every_sample_records_its_counts_and_the_run_sums_them(name, tmp_path_factory, twins_dir):
    run = pipeline(name, tmp_path_factory.getbasetemp() / "pipelines", twins_dir)
    samples = run.samples["hh_harmless_mini"]
    recs = [s["icdpo_eval"]["compute"] for s in samples]
    for r in recs:
        assert r["forward_tokens"] == sum(m.get(k, 0) for m in r["models"].values() for k in compute.TOKEN_KINDS)
        assert r["generated_tokens"] > 0 and r["seconds"] > 0 and r["documents_in_batch"] == 1
        assert len(r["models"]) == 2  # the base model and the teacher, each under its own name
    summary = run.results["config"]["icdpo_eval"]["compute"]["hh_harmless_mini"]
    assert summary["documents"] == len(samples) == 2 and summary["documents_resumed"] == 0
    for k in ("forward_tokens", "generated_tokens", "forward_calls", "cached_tokens"):
        assert summary["total"][k] == sum(r[k] for r in recs)
        assert summary["per_document"][k] == pytest.approx(summary["total"][k] / 2, abs=1e-3)
