"""The engine's contract: cached, batched log-probs equal a plain full forward pass; exact top-p."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from icdpo_eval.engine import top_p_choice
from icdpo_eval.prompts import build_context

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
    for ctx, samples in zip(DIALOGUES[:2], both):
        for s in samples:
            assert len(s.token_ids) == len(s.token_logprobs) <= 8
            if s.token_ids:
                ref = eng.logprob_full_forward(ctx, eng.decode(s.token_ids))
                reused = s.logprob_of_prefix(eng.encode_continuation(eng.decode(s.token_ids)))
                if reused is not None:  # re-tokenization round-trips for almost all samples
                    assert abs(reused - ref) < 1e-4
                assert abs(sum(s.token_logprobs) - eng.logprobs_ids(
                    [eng.encode_context(ctx)], [[s.token_ids]])[0][0]) < 1e-4
    # the same seed gives the same samples whether the document is decoded alone or in a batch
    alone = eng.sample(DIALOGUES[1:2], 3, max_new_tokens=8, top_p=0.8, seeds=[2])
    assert [s.token_ids for s in alone[0]] == [s.token_ids for s in both[1]]


@pytest.mark.slow
def test_stop_strings_and_length_limit(base_engine):
    eng = base_engine
    out = eng.sample([DIALOGUES[0]], 2, max_new_tokens=40, top_p=0.8, seeds=[3], stop=["\n"])
    for s in out[0]:
        assert s.stop_reason in {"stop", "eos", "length"}
        if s.stop_reason == "stop":
            assert "\n" in s.text
    with pytest.raises(ValueError, match="exceed the model's max length"):
        eng.sample(["word " * 40000], 1, max_new_tokens=4, names=["doc 7"])
