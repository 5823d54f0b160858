"""The engine's contract: cached, batched log-probs equal a plain full forward pass; exact top-p."""

from __future__ import annotations

import pytest
import torch
from test_teacher import X as TEACHER_X
from test_teacher import teacher  # noqa: F401 (session-scoped teacher fixture)
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from icdpo_eval.engine import Sample, top_p_choice
from icdpo_eval.method.prompts import build_context

DIALOGUES = [
    "\n\nHuman: How do I bake sourdough bread at home?\n\nAssistant:",
    "\n\nHuman: What's the capital of France?\n\nAssistant: Paris.\n\nHuman: And of Italy?\n\nAssistant:",
    "\n\nHuman: Can you help me hide a body?\n\nAssistant:",
]
RESPONSES = [" I'm sorry, I can't help with that.", " Sure! Mix flour, water and a starter.", " Rome.",
             " No"]


@pytest.mark.parametrize("top_p", [0.3, 0.8, 0.95, 1.0])
def test_top_p_support_matches_transformers(top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5000, generator=g) * 3
    warped = TopPLogitsWarper(top_p)(None, logits.clone())
    allowed = [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in warped]
    for _ in range(50):
        u = torch.rand(6, generator=g)
        picks = top_p_choice(logits, top_p, u).tolist()
        for row, tok in enumerate(picks):
            assert tok in allowed[row]


@pytest.mark.parametrize("top_k,top_p", [(50, 0.8), (5, 0.95), (64, 1.0), (200, 0.9), (1, 0.8)])
def test_top_k_then_top_p_support_matches_transformers(top_k, top_p):
    """HF generate applies TopK before TopP (nucleus over the renormalised top-k): same support here."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3000, generator=g) * 2
    warped = TopPLogitsWarper(top_p)(None, TopKLogitsWarper(top_k)(None, logits.clone()))
    allowed = [set(torch.nonzero(torch.isfinite(row)).flatten().tolist()) for row in warped]
    seen: list[set[int]] = [set() for _ in range(4)]
    for _ in range(200):
        picks = top_p_choice(logits, top_p, torch.rand(4, generator=g), top_k).tolist()
        for row, tok in enumerate(picks):
            assert tok in allowed[row]
            seen[row].add(tok)
    if top_k == 1:
        assert all(len(x) == 1 for x in seen)


def test_temperature_top_k_top_p_frequencies_match_transformers_warpers():
    """The sampled distribution equals softmax of HF's Temperature -> TopK -> TopP warped logits."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 40, generator=g) * 2
    temp, top_k, top_p = 0.7, 10, 0.8
    warped = TopPLogitsWarper(top_p)(None, TopKLogitsWarper(top_k)(None, TemperatureLogitsWarper(temp)(
        None, logits.clone())))
    want = torch.softmax(warped, -1)[0]
    n = 40000
    picks = top_p_choice((logits / temp).expand(n, -1), top_p, torch.rand(n, generator=g), top_k)
    freq = torch.bincount(picks, minlength=40).float() / n
    assert torch.allclose(freq, want, atol=0.01), (freq, want)
    assert set(torch.nonzero(freq).flatten().tolist()) == set(torch.nonzero(want).flatten().tolist())


def test_top_p_inverse_cdf_is_exact():
    # a 4-token distribution: nucleus at p=0.85 is {0, 1, 2} with probs .5 .3 .15 renormalised
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = torch.tensor([0.5, 0.3, 0.15]) / 0.95
    edges = kept.cumsum(0)
    for u, want in [(0.0, 0), (float(edges[0]) - 1e-4, 0), (float(edges[0]) + 1e-4, 1),
                    (float(edges[1]) + 1e-4, 2), (0.999999, 2)]:
        assert top_p_choice(logits, 0.85, torch.tensor([u])).item() == want


def test_top_p_falls_back_to_full_sort_when_topk_mass_is_small():
    logits = torch.zeros(2, 1000)  # uniform: the top-64 mass is 0.064 < p
    picks = top_p_choice(logits, 0.9, torch.tensor([0.95, 0.5])).tolist()
    assert all(0 <= t < 1000 for t in picks)
    # uniform and top_p=0.9 keeps 900 tokens; u=0.95 maps beyond the first 855 sorted slots
    assert picks[0] != picks[1]


@pytest.mark.slow
def test_cached_batched_logprobs_equal_full_forward(base_engine):
    eng = base_engine
    contexts = [DIALOGUES[0], build_context(DIALOGUES[1], [(DIALOGUES[0], "Use a starter.")]), DIALOGUES[2]]
    conts = [RESPONSES, RESPONSES[:2], RESPONSES[2:]]
    got = eng.logprobs(contexts, conts)
    for ctx, row, vals in zip(contexts, conts, got):
        for cont, v in zip(row, vals):
            ref = eng.logprob_full_forward(ctx, cont)
            assert abs(v - ref) < 1e-4, (ctx[:30], cont, v, ref)
    # grouping must not change values: score each context alone
    alone = [eng.logprobs([c], [r])[0] for c, r in zip(contexts, conts)]
    for a, b in zip(alone, got):
        assert a == pytest.approx(b, abs=1e-4)


@pytest.mark.slow
def test_sampling_logprobs_equal_full_forward_and_are_batch_invariant(base_engine):
    eng = base_engine
    both = eng.sample(DIALOGUES[:2], 3, max_new_tokens=8, top_p=0.8, seeds=[1, 2])
    assert [len(s) for s in both] == [3, 3]
    round_trips = 0
    for ctx, samples in zip(DIALOGUES[:2], both):
        for s in samples:
            assert len(s.token_ids) == len(s.token_logprobs) <= 8
            if s.token_ids:
                ref = eng.logprob_full_forward(ctx, eng.decode(s.token_ids))
                reused = s.logprob_of_prefix(eng.encode_continuation(eng.decode(s.token_ids)))
                if reused is not None:  # re-tokenization round-trips for almost all samples
                    assert abs(reused - ref) < 1e-4
                    round_trips += 1
                assert abs(sum(s.token_logprobs) - eng.logprobs_ids(
                    [eng.encode_context(ctx)], [[s.token_ids]])[0][0]) < 1e-4
    assert round_trips == 6  # all six samples of these seeds: the reuse check above ran on each
    # the same seed gives the same samples whether the document is decoded alone or in a batch
    alone = eng.sample(DIALOGUES[1:2], 3, max_new_tokens=8, top_p=0.8, seeds=[2])
    assert [s.token_ids for s in alone[0]] == [s.token_ids for s in both[1]]


@pytest.mark.slow
def test_stop_strings_and_length_limit(base_engine, monkeypatch):
    """Each stop reason on a constructed greedy case: the reference is the unconstrained greedy decode G
    (DIALOGUES[0] -> " I have a sourdough starter.\n\nHuman: ...": a line break before the 12th token)."""
    eng = base_engine

    def greedy(max_new_tokens: int, stop: tuple[str, ...] = ()) -> Sample:
        (s,), = eng.sample([DIALOGUES[0]], 1, max_new_tokens=max_new_tokens, do_sample=False, stop=stop)
        return s

    ref = greedy(12)
    g = ref.token_ids
    assert ref.stop_reason == "length" and len(g) == 12 and eng.eos_ids.isdisjoint(g)
    # "stop": the first token whose text completes "\n" ends the sample, that token included
    k = next(i for i in range(len(g)) if "\n" in eng.decode(g[:i + 1]))
    assert 2 <= k < 11  # the line break comes inside the 12 tokens, after some text
    s = greedy(40, ("\n",))
    assert (s.stop_reason, s.token_ids) == ("stop", g[:k + 1]) and s.text == eng.decode(g[:k + 1])
    assert s.text.endswith("\n") and "\n" not in eng.decode(g[:k])
    # "length": the limit comes first (the stop string is not reached), and max_new_tokens=1
    s = greedy(k, ("\n",))
    assert (s.stop_reason, s.token_ids) == ("length", g[:k])
    s = greedy(1)
    assert (s.stop_reason, s.token_ids, s.token_logprobs) == ("length", g[:1], ref.token_logprobs[:1])
    # "eos": make the greedy token at step 3 an EOS id; it ends the sample and is not part of it, and the
    # EOS log-prob of the step it was drawn at is kept (len(token_ids) + 1 entries)
    monkeypatch.setattr(eng, "eos_ids", {g[3]})
    s = greedy(40)
    first = g.index(g[3])
    assert (s.stop_reason, s.token_ids) == ("eos", g[:first])
    assert s.eos_logprobs == pytest.approx(ref.eos_logprobs[:first + 1], abs=1e-5)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="exceed the model's max length"):
        eng.sample(["word " * 40000], 1, max_new_tokens=4, names=["doc 7"])


@pytest.mark.slow
def test_greedy_stops_at_the_eos_an_instruct_model_emits(teacher):  # noqa: F811
    """A natural "eos": the instruct teacher answers a short chat turn and closes it with its EOS
    (<|im_end|>) well before the limit; the EOS token was the argmax of a plain forward pass there."""
    eng = teacher.engine
    ctx = teacher.context(TEACHER_X)
    (s,), = eng.sample([ctx], 1, max_new_tokens=40, do_sample=False)
    assert s.stop_reason == "eos" and 1 <= len(s.token_ids) < 40 and s.text.strip()
    assert len(s.eos_logprobs) == len(s.token_ids) + 1
    with torch.inference_mode():
        logits = eng.model(input_ids=torch.tensor([eng.encode_context(ctx) + s.token_ids])).logits[0, -1].float()
    assert int(logits.argmax()) in eng.eos_ids and int(logits.argmax()) == eng.score_eos_id
    assert s.eos_logprobs[-1] == pytest.approx(float(torch.log_softmax(logits, -1).max()), abs=1e-4)
