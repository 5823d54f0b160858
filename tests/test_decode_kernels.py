"""The decode step's kernels (engine.LMHead's layouts, engine.TrunkLinears): every one computes what F.linear
computes, only the engine's decode steps switch kernel, and a sampled token's log-prob under any of them equals a
plain forward pass."""

from __future__ import annotations

import copy

import pytest
import torch

from icdpo_eval.engine import engine as E

ONEDNN = E._onednn_usable(torch.zeros(1))
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
    for kernel in E.TrunkLinears.KINDS.values():
        torch.testing.assert_close(kernel(x, w, b), torch.nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)
    head = E.LMHead(torch.randn(5000, 64), None, probe=False)
    ref = torch.nn.functional.linear(x[:, -1], head.weight)
    assert "onednn" in head.layouts
    with torch.no_grad():
        for name, fn in head.layouts.items():
            torch.testing.assert_close(fn(x[:, -1]), ref, rtol=1e-5, atol=1e-5, msg=name)


@needs_onednn
def test_only_decode_steps_switch_kernel(monkeypatch, tmp_path):
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    model = _tiny_model()
    unpatched = copy.deepcopy(model)
    linears = E.TrunkLinears.attach(model.model, torch.device("cpu"))
    assert linears is not None and len(linears.modules) == 2 * 7  # q k v o + gate up down, per layer
    assert E.TrunkLinears.attach(model.model, torch.device("cpu")) is linears  # one per model
    calls: list[tuple[int, ...]] = []

    def spy(x, w, b=None):
        calls.append(tuple(x.shape))
        return torch.nn.functional.linear(x, w, b)

    monkeypatch.setitem(E.TrunkLinears.KINDS, "onednn", spy)
    ids = torch.tensor([[1, 2, 3]])
    with torch.inference_mode():
        plain = model(ids).logits
        assert calls == []  # outside a decode step: F.linear, whatever was chosen
        linears.choice[1] = "onednn"
        with linears.decode(1):
            switched = model(ids).logits
        assert len(calls) == 14 and E._DECODE_KERNEL is None  # restored on exit
    torch.testing.assert_close(switched, plain)
    # a deep copy's layers run on the copy's weights, not the original's
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for m in (twin, unpatched):
            for p in m.parameters():
                p.mul_(0.5)
        torch.testing.assert_close(twin(ids).logits, unpatched(ids).logits)


@needs_onednn
def test_a_new_row_count_is_timed_once_and_saved(monkeypatch, tmp_path):
    monkeypatch.setenv("ICDPO_CACHE_DIR", str(tmp_path))
    linears = E.TrunkLinears([m for m in _tiny_model().model.modules() if type(m) is torch.nn.Linear])
    with linears.decode(5):
        pass
    assert set(linears.timings[5]) == set(E.TrunkLinears.KINDS) and linears.choice[5] in E.TrunkLinears.KINDS
    again = E.TrunkLinears([m for m in _tiny_model().model.modules() if type(m) is torch.nn.Linear])
    assert again.choice == {5: linears.choice[5]}  # read back: the next run computes the same logits


@pytest.mark.parametrize("trunk,head", [("linear", "linear"), ("onednn", "onednn"), ("onednn", "wh_blocks")])
def test_sampled_logprobs_equal_a_plain_forward_under_each_kernel(base_engine, monkeypatch, trunk, head):
    eng = base_engine
    if eng.linears is None or head not in eng.head.layouts:
        pytest.skip("no kernel choice on this device")
    monkeypatch.setattr(eng.linears, "choice", {r: trunk for r in range(1, 7)})
    monkeypatch.setattr(eng.head, "choice", {r: head for r in range(1, 7)})
    ctx = "Human: How do I keep basil fresh?\n\nAssistant:"
    # temperature: the twin's flat distribution made as peaked as a trained model's (test_engine.PEAKED)
    (samples,) = eng.sample([ctx], 3, max_new_tokens=6, top_p=0.8, temperature=0.02, seeds=[7])
    assert all(len(s.token_ids) == 6 for s in samples)
    for s in samples:
        ref = eng.logprobs_ids([eng.encode_context(ctx)], [[s.token_ids]])[0][0]
        assert abs(sum(s.token_logprobs) - ref) < 1e-4, (trunk, head, s.text)
