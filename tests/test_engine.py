"""The engine's contract: cached, batched log-probs equal a plain full forward pass; exact top-p.

Everything here runs on the tiny random twin of the base model (its sliding-window layer has a 16-token window, so
every dialogue below crosses it), except ``test_greedy_stops_at_the_eos_an_instruct_model_emits``: an instruct
model closing its turn with its EOS is what training taught it, so that test needs the REAL teacher's weights."""

from __future__ import annotations

import pytest
import torch
from test_teacher import X as TEACHER_X
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


def test_load_keeps_what_it_was_asked_for(twins_dir, tmp_path):
    """``Engine.load``'s engine carries its limits and the weights key of exactly what it loaded, adapter included: the
    candidate store and the weight cache key by it, so two adapters on one base, or one folder retrained, must never
    share a key (seen red: an edit that dropped ``weights_key=`` / ``max_rows=`` / ``max_length=`` served the SFT
    row the DPO row's candidates)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from icdpo_eval.engine import Engine, weights_key

    base = str(twins_dir / "base")
    adapters = []
    for i in range(2):
        torch.manual_seed(i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                               LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
        model.save_pretrained(tmp_path / f"lora{i}")
        adapters.append(str(tmp_path / f"lora{i}"))
    engines = [Engine.load(base, device="cpu", dtype="float32", adapter=a, merge_adapter=True, max_rows=7,
                           max_length=333) for a in adapters]
    for a, eng in zip(adapters, engines):
        assert eng.weights_key == weights_key(base, device="cpu", dtype="float32", adapter=a, merge_adapter=True)
        assert (eng.max_rows, eng.max_length) == (7, 333)
    assert engines[0].weights_key != engines[1].weights_key
    ids = engines[0].encode_context(DIALOGUES[0])
    logits = [eng.model(input_ids=torch.tensor([ids])).logits[0, -1] for eng in engines]
    assert not torch.allclose(logits[0], logits[1])  # two different models behind the two keys
    # retrained in place (the same folder, other weights): another key, so no stored candidate of the old one is served
    import shutil

    before = weights_key(base, device="cpu", dtype="float32", adapter=adapters[0], merge_adapter=True)
    shutil.copy(tmp_path / "lora1" / "adapter_model.safetensors", tmp_path / "lora0" / "adapter_model.safetensors")
    after = weights_key(base, device="cpu", dtype="float32", adapter=adapters[0], merge_adapter=True)
    assert after != before and after[-1] == engines[1].weights_key[-1]  # the content's fingerprint, not the path's


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


# The twin's next-token distribution is flat (logits of std 0.16 over 262k tokens: a top-p=0.8 nucleus of ~200k
# tokens, where a last-bit difference between batch shapes moves the pick). At this temperature it is as peaked
# as a trained model's (a nucleus of a few tokens, the sampler's top-k fast path); the recorded log-probs are the
# model's own (untempered) either way.
PEAKED = 0.02


def test_sampling_logprobs_equal_full_forward_and_are_batch_invariant(base_engine):
    eng = base_engine
    both = eng.sample(DIALOGUES[:2], 3, max_new_tokens=8, top_p=0.8, temperature=PEAKED, seeds=[1, 2])
    assert [len(s) for s in both] == [3, 3]
    assert all(len({tuple(s.token_ids) for s in samples}) > 1 for samples in both)  # sampled, not greedy
    round_trips = 0
    for ctx, samples in zip(DIALOGUES[:2], both):
        for s in samples:
            assert len(s.token_ids) == len(s.token_logprobs) <= 8
            if s.token_ids:
                ref = eng.logprob_full_forward(ctx, eng.decode(s.token_ids))
                retok = eng.encode_continuation(eng.decode(s.token_ids))
                reused = s.logprob_of_prefix(retok)
                # reuse exactly when the re-tokenized text is the sampled tokens (random twins sample rare
                # tokens, so not every sample round-trips)
                assert (reused is None) == (retok != s.token_ids)
                if reused is not None:
                    assert abs(reused - ref) < 1e-4
                    round_trips += 1
                assert abs(sum(s.token_logprobs) - eng.logprobs_ids(
                    [eng.encode_context(ctx)], [[s.token_ids]])[0][0]) < 1e-4
    assert round_trips >= 4  # of the six samples of these seeds (5 on the twin): the reuse check ran
    # the same seed gives the same samples whether the document is decoded alone or in a batch
    alone = eng.sample(DIALOGUES[1:2], 3, max_new_tokens=8, top_p=0.8, temperature=PEAKED, seeds=[2])
    assert [s.token_ids for s in alone[0]] == [s.token_ids for s in both[1]]


def test_stop_strings_and_length_limit(base_engine, monkeypatch):
    """Each stop reason on a constructed greedy case: the reference is the unconstrained greedy decode G of 12
    tokens; the stop string spans two of its tokens (the end of token k-1's text and all of token k's), so only
    token k completes it."""
    eng = base_engine

    def greedy(max_new_tokens: int, stop: tuple[str, ...] = ()) -> Sample:
        (s,), = eng.sample([DIALOGUES[0]], 1, max_new_tokens=max_new_tokens, do_sample=False, stop=stop)
        return s

    ref = greedy(12)
    g = ref.token_ids
    assert ref.stop_reason == "length" and len(g) == 12 and eng.eos_ids.isdisjoint(g)
    assert ref.text == eng.decode(g) and len(ref.eos_logprobs) == 12

    def spanning(k: int) -> str | None:
        prev, full = eng.decode(g[:k]), eng.decode(g[:k + 1])
        if not (full.startswith(prev) and len(full) > len(prev) and prev):
            return None
        word = full[len(prev) - 1:]  # the last character of token k-1 and the whole text of token k
        return word if word.strip() and word not in prev else None

    k, word = next((k, w) for k in range(3, 10) if (w := spanning(k)))
    # "stop": the first token whose text completes the stop string ends the sample, that token included
    s = greedy(40, ("zzz-never", word))
    assert (s.stop_reason, s.token_ids) == ("stop", g[:k + 1]) and s.text == eng.decode(g[:k + 1])
    assert s.token_logprobs == pytest.approx(ref.token_logprobs[:k + 1], abs=1e-5)
    assert s.text.endswith(word) and word not in eng.decode(g[:k])
    # "length": the limit comes first (the stop string is not reached), and max_new_tokens=1
    s = greedy(k, (word,))
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


@pytest.mark.real
def test_greedy_stops_at_the_eos_an_instruct_model_emits():
    """A natural "eos": the instruct teacher answers a short chat turn and closes it with its EOS
    (<|im_end|>) well before the limit; the EOS token was the argmax of a plain forward pass there.
    REAL weights: a random twin never closes its turn; ending the answer is what instruction tuning taught the
    real SmolLM2 (every forced-EOS path is tested on the twin, test_stop_strings_and_length_limit)."""
    from icdpo_eval.data.embedded import teacher_model_path
    from icdpo_eval.method.teacher import HFTeacher

    teacher = HFTeacher.load(str(teacher_model_path(real=True)), device="cpu", dtype="float32")
    eng = teacher.engine
    assert eng.model.config.num_hidden_layers == 30  # the real SmolLM2-135M, not its twin
    ctx = teacher.context(TEACHER_X)
    (s,), = eng.sample([ctx], 1, max_new_tokens=40, do_sample=False)
    assert s.stop_reason == "eos" and 1 <= len(s.token_ids) < 40 and s.text.strip()
    assert len(s.eos_logprobs) == len(s.token_ids) + 1
    with torch.inference_mode():
        logits = eng.model(input_ids=torch.tensor([eng.encode_context(ctx) + s.token_ids])).logits[0, -1].float()
    assert int(logits.argmax()) in eng.eos_ids and int(logits.argmax()) == eng.score_eos_id
    assert s.eos_logprobs[-1] == pytest.approx(float(torch.log_softmax(logits, -1).max()), abs=1e-4)
