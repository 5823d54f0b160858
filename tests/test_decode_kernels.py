"""The decode step's kernels (engine/kernels.py: LMHead's layouts, TrunkLinears, the DecodeKernels strategy): every
one computes what F.linear computes, only the engine's decode steps switch kernel (the model's modules untouched, so
other users of the same weights compute as before), a sampled token's log-prob under any of them equals a plain
forward pass, and the strategy's choice is recorded (results, journal key, candidate-store key)."""

from __future__ import annotations

import pytest
import torch

from icdpo_eval.engine import kernels as K

ONEDNN = K._onednn_usable(torch.zeros(1))
needs_onednn = pytest.mark.skipif(not ONEDNN, reason="this torch has no oneDNN linear kernel")


def _tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


@needs_onednn
@pytest.mark.parametrize("rows", [1, 3, 12])
def test_every_kernel_computes_f_linear(rows):
    w, b = torch.randn(96, 64), torch.randn(96)
    x = torch.randn(rows, 1, 64)
    for kernel in K.TrunkLinears.KINDS.values():
        torch.testing.assert_close(kernel(x, w, b), torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)
    head = K.LMHead(torch.randn(5000, 64), None, probe=False)
    ref = torch.nn.functional.linear(x[:, -1], head.weight)
    assert "onednn" in head.layouts
    with torch.no_grad():
        for name, fn in head.layouts.items():
            torch.testing.assert_close(fn(x[:, -1]), ref, rtol=1e-5, atol=1e-5, msg=name)


@needs_onednn
def test_only_decode_steps_switch_kernel_and_the_model_is_untouched(monkeypatch, tmp_path):
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    model = _tiny_model()
    forwards = {id(m): m.forward for m in model.modules()}
    kernels = K.DecodeKernels.for_model(model, torch.device("cpu"))
    linears = kernels.linears
    assert linears is not None and len(linears.modules) == 2 * 7  # q k v o + gate up down, per layer
    assert K.DecodeKernels.for_model(model, torch.device("cpu")) is kernels  # one per model and mode
    assert not [m for m in model.modules() if "forward" in vars(m)]  # no module's forward rebound
    calls: list[tuple[int, ...]] = []

    def spy(x, w, b=None):
        calls.append(tuple(x.shape))
        return torch.nn.functional.linear(x, w, b)

    monkeypatch.setitem(K.TrunkLinears.KINDS, "onednn", spy)
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        plain = kernels.trunk(ids).last_hidden_state
        assert calls == []  # outside a decode step: F.linear, whatever was chosen
        linears.choice[1] = "onednn"
        with kernels.decode(1):  # the engine runs the trunk in the step, the head (kernels.head) after it
            switched = kernels.trunk(ids).last_hidden_state
        assert len(calls) == 14  # every trunk linear layer, once
        model(ids)
        assert len(calls) == 14  # the mode ended with the step: the model's own forward is F.linear
    torch.testing.assert_close(switched, plain)
    assert {id(m): m.forward for m in model.modules()} == forwards


@needs_onednn
def test_a_new_row_count_is_timed_once_and_saved(monkeypatch, tmp_path):
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    linears = K.TrunkLinears([m for m in _tiny_model().model.modules() if type(m) is torch.nn.Linear])
    with linears.decode(5):
        pass
    assert set(linears.timings[5]) == set(K.TrunkLinears.KINDS) and linears.choice[5] in K.TrunkLinears.KINDS
    again = K.TrunkLinears([m for m in _tiny_model().model.modules() if type(m) is torch.nn.Linear])
    assert again.choice == {5: linears.choice[5]}  # read back: the next run computes the same logits


def test_best_of_times_the_fastest_call():
    import time

    delays = iter([0.0, 0.03, 0.01, 0.02])  # the first call is the untimed warm-up
    assert 0.009 < K.best_of(lambda: time.sleep(next(delays)), k=3) < 0.019


def test_off_is_the_model_s_own_forward_and_every_choice_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    model = _tiny_model()
    off = K.DecodeKernels.for_model(model, torch.device("cpu"), "off")
    assert not off.active and off.linears is None and off.key() == "off" and off.record()["mode"] == "off"
    auto = K.DecodeKernels.for_model(model, torch.device("cpu"), "auto")
    assert auto.active and auto.key().startswith("auto@") and auto.key() != off.key()
    here = auto.key()
    monkeypatch.setattr(K, "machine", lambda: "another CPU|2|2|torch")
    assert auto.key() != here  # another machine's saved choices: another key (journal, candidate store)
    with pytest.raises(ValueError, match="decode_kernels='fast'"):
        K.DecodeKernels(model, torch.device("cpu"), "fast")


@needs_onednn
def test_onednn_is_one_fixed_kernel_measured_nowhere(monkeypatch, tmp_path):
    """decode_kernels=onednn: oneDNN's kernel for every row count, no timing probe and no choice file read or written
    (so two machines of one kind compute the same bits: what the CI baseline runs with); its key names no machine."""
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(K, "best_of", lambda *a, **k: (_ for _ in ()).throw(AssertionError("a probe ran")))
    model = _tiny_model()
    fixed = K.DecodeKernels.for_model(model, torch.device("cpu"), "onednn")
    assert fixed.active and fixed.key() == "onednn"
    for rows in (1, 3, 12):
        with fixed.decode(rows):
            pass
        logits = fixed.head(torch.randn(rows, 1, 64))
        assert logits.shape == (rows, 1, 300)
    assert set(fixed.linears.choice.values()) == {"onednn"} and set(fixed.head.choice.values()) == {"onednn"}
    assert not list(tmp_path.rglob("*.json"))  # nothing saved, nothing to read back
    monkeypatch.setattr(K, "machine", lambda: "another CPU|2|2|torch")
    assert fixed.key() == "onednn"


@pytest.mark.parametrize("trunk,head", [("linear", "linear"), ("onednn", "onednn"), ("onednn", "wh_blocks")])
def test_sampled_logprobs_equal_a_plain_forward_under_each_kernel(base_engine, monkeypatch, trunk, head):
    eng = base_engine
    if eng.kernels.linears is None or head not in eng.kernels.head.layouts:
        pytest.skip("no kernel choice on this device")
    monkeypatch.setattr(eng.kernels.linears, "choice", {r: trunk for r in range(1, 7)})
    monkeypatch.setattr(eng.kernels.head, "choice", {r: head for r in range(1, 7)})
    ctx = "Human: How do I keep basil fresh?\n\nAssistant:"
    # temperature: the twin's flat distribution made as peaked as a trained model's (test_engine.PEAKED)
    (samples,) = eng.sample([ctx], 3, max_new_tokens=6, top_p=0.8, temperature=0.02, seeds=[7])
    assert all(len(s.token_ids) == 6 for s in samples)
    for s in samples:
        ref = eng.logprobs_ids([eng.encode_context(ctx)], [[s.token_ids]])[0][0]
        assert abs(sum(s.token_logprobs) - ref) < 1e-4, (trunk, head, s.text)
