"""The hot path: prefix-cached sampling and scoring on a Hugging Face causal LM.

Every method in icdpo-eval (ICDPO, its ablations and the baselines) is "generate candidates, then
score them" over this one class. What it guarantees:

* each distinct context is encoded ONCE (one prefill); its KV cache is expanded across the N samples
  drawn from it, or across all the continuations scored under it;
* the logits over the vocabulary are computed only where they are needed: the last position of a
  prefill, one position per row and decode step, the continuation positions of a scoring pass;
* rows of several documents are decoded together (left-padded), finished rows are dropped from the
  batch as they stop;
* log-probs equal a plain full forward pass of context + continuation (tested to 1e-4 in fp32);
* sampling applies temperature, then top-k, then top-p, as transformers' warpers do (HF ``generate``
  is what the released ICDPO code samples with); top-p is exact but avoids the full-vocabulary sort
  (top-k prefilter, falls back to a full sort for the rare rows whose top-k mass is below p); each row
  draws from its own seeded generator, so a document's samples do not depend on how requests were
  batched;
* each sampling step also records log p(EOS | context, tokens so far), so a candidate scored with its
  EOS appended (as the released scorer does) still reuses the sampling pass;
* :class:`Session` keeps ONE growing sequence's cache for blockwise methods (RM-Aug): sample N blocks from
  it, score blocks over it, continue with the chosen one, never re-encoding the prefix.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from icdpo_eval.engine.sampling import SamplingParams, row_generator, stable_seed, top_p_choice
from icdpo_eval.runtime import resolve_device, resolve_dtype, tokenizer

log = logging.getLogger(__name__)

@dataclass
class Sample:
    """One sampled continuation: raw tokens, their log-probs under the sampling context, raw text.

    ``eos_logprobs[i]`` is log p(EOS | context, token_ids[:i]) (the engine's scoring EOS token), for every
    step the sampler computed a distribution at: ``len(token_ids) + 1`` entries when the row ended with
    EOS, ``len(token_ids)`` otherwise."""

    token_ids: list[int]
    token_logprobs: list[float]
    text: str
    stop_reason: str = "length"  # "eos" | "stop" | "length"
    eos_logprobs: list[float] = field(default_factory=list)

    def logprob_of_prefix(self, ids: Sequence[int], *, eos: bool = False) -> float | None:
        """log p(ids | context), plus log p(EOS | context, ids) with ``eos``, when ``ids`` is a prefix of the
        sampled tokens and the sampler computed the needed distributions (free reuse); else None."""
        n = len(ids)
        if n > len(self.token_ids) or list(ids) != self.token_ids[:n]:
            return None
        if not eos:
            return None if n == 0 else float(sum(self.token_logprobs[:n]))
        if n >= len(self.eos_logprobs):
            return None
        return float(sum(self.token_logprobs[:n]) + self.eos_logprobs[n])


class Rows(NamedTuple):
    """Batch rows over one KV cache: next-token logits [B, V], the cache, the attention mask [B, T] (left
    padding = 0) and each row's next position [B]. What a prefill returns and decoding / scoring consume."""

    logits: torch.Tensor
    cache: Any
    mask: torch.Tensor
    next_pos: torch.Tensor

    def repeat(self, n: int) -> Rows:
        """Each row ``n`` times in place (row r becomes rows r*n .. r*n+n-1); the cache is expanded, not copied."""
        if n == 1:
            return self
        self.cache.batch_repeat_interleave(n)
        return Rows(self.logits.repeat_interleave(n, 0), self.cache, self.mask.repeat_interleave(n, 0),
                    self.next_pos.repeat_interleave(n, 0))

    def select(self, sel: torch.Tensor) -> Rows:
        """The rows ``sel`` (indices, repeats allowed); the cache is narrowed in place."""
        self.cache.batch_select_indices(sel)
        return Rows(self.logits[sel], self.cache, self.mask[sel], self.next_pos[sel])


def _merge_left_padded(caches: list, width: int):
    """One batch cache from single-row caches of contexts of different lengths, as a left-padded prefill
    of ``width`` tokens would hold it (the padding slots are zeros; the attention mask hides them).
    Only for full and sliding-window dynamic layers; returns None for any other cache layout."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    first = caches[0]
    layers = [getattr(c, "layers", None) for c in caches]
    if any(ls is None or len(ls) != len(layers[0]) for ls in layers):
        return None
    if any(type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers[0]):
        return None
    for i, layer in enumerate(first.layers):
        rows_k = [ls[i].keys for ls in layers]
        rows_v = [ls[i].values for ls in layers]
        size = max(k.shape[-2] for k in rows_k)

        def pad(t: torch.Tensor, size: int = size) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, 0, size - t.shape[-2], 0))

        layer.keys = torch.cat([pad(k) for k in rows_k])
        layer.values = torch.cat([pad(v) for v in rows_v])
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length = width
    return first


def _forward_params(fn: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _cache_arg() -> str:
    """transformers >= 5.24 names the KV cache ``cache`` (``past_key_values`` is deprecated, removed in 5.40)."""
    from transformers.models.llama.modeling_llama import LlamaForCausalLM

    return "cache" if "cache" in _forward_params(LlamaForCausalLM.forward) else "past_key_values"


_CACHE_ARG = _cache_arg()


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _onednn_usable(weight: torch.Tensor) -> bool:
    """oneDNN's linear kernel applies: fp32 weights on the CPU and a torch built with it."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` computed by oneDNN (the kernel torch's compiler uses on the CPU)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _choices_path(kind: str, ident: str) -> Any:
    """Where the layout choices measured on this machine (CPU model, cores, threads, torch) are saved."""
    import hashlib
    import os
    import platform

    from icdpo_eval import runtime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    key = f"{cpu}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}|{ident}"
    return runtime.cache_path(kind, hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")


def _load_choices(kind: str, ident: str) -> dict[int, str]:
    import json

    try:
        return {int(k): str(v) for k, v in json.loads(_choices_path(kind, ident).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_choices(kind: str, ident: str, choice: dict[int, str]) -> None:
    import json

    from icdpo_eval import runtime

    path = _choices_path(kind, ident)
    with runtime.locked(path):
        merged = {**_load_choices(kind, ident), **choice}
        runtime.atomic_write(path, lambda fh: json.dump({str(k): v for k, v in sorted(merged.items())}, fh))


_DECODE_KERNEL: Any = None  # the linear kernel of the trunk's layers inside an engine's decode step; None: F.linear


def _dispatch_linear(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``forward`` of a trunk linear layer (bound to it by :class:`TrunkLinears`)."""
    kernel = _DECODE_KERNEL
    if kernel is None:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    return kernel(x, self.weight, self.bias)


class TrunkLinears:
    """The trunk's linear layers (attention and MLP projections) on a decode step, in the faster exact kernel for
    that many rows: BLAS's ``F.linear`` (what transformers calls) or oneDNN's linear on the same weights. Both are
    timed on this machine the first time a row count is seen (on inputs of the layers' shapes, best of 3) and the
    choice is saved beside :class:`LMHead`'s. Only the engine's decode steps switch kernel: prefill, scoring,
    training and HF ``generate`` on the same weights run ``F.linear`` as before. Nothing is copied (the layers'
    ``forward`` is rebound; a deep copy of the model rebinds to the copy's layers)."""

    KINDS = {"linear": torch.nn.functional.linear, "onednn": _onednn_linear}

    def __init__(self, modules: list[torch.nn.Linear]) -> None:
        self.modules = modules
        self.ident = "|".join(f"{tuple(m.weight.shape)}" for m in modules) + f"|{','.join(self.KINDS)}"
        self.choice: dict[int, str] = _load_choices("trunk_linears", self.ident)
        self.timings: dict[int, dict[str, float]] = {}
        for m in modules:
            m.forward = types.MethodType(_dispatch_linear, m)

    @classmethod
    def attach(cls, trunk: Any, device: torch.device) -> TrunkLinears | None:
        """The trunk's :class:`TrunkLinears` (one per model, shared by the engines over it), or None where
        there is no choice to make (not the CPU, not fp32, no oneDNN, no plain linear layer)."""
        if device.type != "cpu" or trunk is None:
            return None
        if getattr(trunk, "_icdpo_trunk_linears", None) is None:
            mods = [m for m in trunk.modules() if type(m) is torch.nn.Linear]
            if not mods or not all(_onednn_usable(m.weight) for m in mods):
                return None
            trunk._icdpo_trunk_linears = cls(mods)
        return trunk._icdpo_trunk_linears

    def _time(self, kernel: Any, xs: dict[int, torch.Tensor]) -> float:
        import time

        t0 = time.perf_counter()
        for m in self.modules:
            kernel(xs[m.in_features], m.weight, m.bias)
        return time.perf_counter() - t0

    def _choose(self, rows: int) -> str:
        xs = {m.in_features: torch.randn(rows, 1, m.in_features) for m in self.modules}
        times: dict[str, float] = {k: float("inf") for k in self.KINDS}
        for kernel in self.KINDS.values():
            self._time(kernel, xs)  # warm-up
        for _ in range(3):
            for name, kernel in self.KINDS.items():
                times[name] = min(times[name], self._time(kernel, xs))
        self.timings[rows] = {k: v * 1000 for k, v in times.items()}
        return min(times, key=times.__getitem__)

    @contextlib.contextmanager
    def decode(self, rows: int) -> Any:
        """Within: the trunk's linear layers run the kernel chosen for ``rows`` rows."""
        global _DECODE_KERNEL
        if rows not in self.choice:
            with torch.inference_mode():
                self.choice[rows] = self._choose(rows)
            _save_choices("trunk_linears", self.ident, {rows: self.choice[rows]})
        prev, _DECODE_KERNEL = _DECODE_KERNEL, self.KINDS[self.choice[rows]]
        try:
            yield
        finally:
            _DECODE_KERNEL = prev


class LMHead:
    """The vocabulary projection of a decode step (``rows`` hidden states -> ``rows`` x V logits), computed in the
    fastest exact layout for the row count at hand, chosen by measurement on this machine.

    The layouts are the same products in another memory order or kernel, no approximation: ``linear``
    (``F.linear(h, W)``, what transformers does), ``wh`` (``W @ h.T``: the head streamed once as the left operand,
    which BLAS handles well for few rows), both over blocks of 8192 vocabulary rows (views of W, written into one
    output), and ``onednn`` (oneDNN's linear kernel on the same fp32 weights, where torch has it: on some CPUs,
    e.g. AMD EPYC, BLAS's few-row product runs far below the memory bandwidth and oneDNN's does not). None
    copies the weights (extra memory: the logits only). The first time a row count is seen, each layout is timed
    on the real hidden states (after a warm-up) and the fastest kept; the choice is saved under the cache dir
    for this machine (CPU, threads, torch, head shape), so later runs compute the same logits without probing again
    (a choice that differs in the last float bits could otherwise flip a top-p boundary between runs). On CUDA the
    plain ``F.linear`` is kept (cuBLAS picks its own kernels). :attr:`timings` holds the probe's ms per layout."""

    BLOCK = 8192

    def __init__(self, weight: torch.Tensor, softcap: float | None, probe: bool) -> None:
        self.weight = weight
        self.softcap = softcap
        self.probe = probe
        self.layouts = {"linear": self._linear, "wh": self._wh, "linear_blocks": self._linear_blocks,
                        "wh_blocks": self._wh_blocks}
        if _onednn_usable(weight):
            self.layouts["onednn"] = self._onednn
        self.choice: dict[int, str] = self._saved() if probe else {}
        self.timings: dict[int, dict[str, float]] = {}

    @classmethod
    def split(cls, model: Any, device: torch.device) -> tuple[Any, LMHead | None]:
        """(trunk, head) when the model is a decoder trunk + a bias-free linear head (most causal LMs), else
        (None, None): the engine then calls the whole model."""
        prefix = getattr(model, "base_model_prefix", "model")
        trunk = getattr(model, prefix, None)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if (trunk is None or not isinstance(head, torch.nn.Linear) or head.bias is not None
                or type(model).__name__.startswith("Peft") or not isinstance(trunk, torch.nn.Module)):
            return None, None
        if "logits_to_keep" not in _forward_params(type(model).forward):  # an unusual head path: the model's own
            return None, None
        if getattr(model, "_icdpo_lm_head", None) is None:  # engines sharing weights share the head's measurements
            softcap = getattr(model.config, "final_logit_softcapping", None)
            model._icdpo_lm_head = cls(head.weight, softcap, probe=device.type == "cpu")
        return trunk, model._icdpo_lm_head

    # the layouts -------------------------------------------------------------------------------------------
    def _linear(self, h: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(h, self.weight)

    def _wh(self, h: torch.Tensor) -> torch.Tensor:
        return torch.mm(self.weight, h.t()).t()

    def _linear_blocks(self, h: torch.Tensor) -> torch.Tensor:
        w = self.weight
        out = torch.empty((h.shape[0], w.shape[0]), dtype=h.dtype, device=h.device)
        for j in range(0, w.shape[0], self.BLOCK):
            torch.mm(h, w[j:j + self.BLOCK].t(), out=out[:, j:j + self.BLOCK])
        return out

    def _onednn(self, h: torch.Tensor) -> torch.Tensor:
        return _onednn_linear(h, self.weight)

    def _wh_blocks(self, h: torch.Tensor) -> torch.Tensor:
        w = self.weight
        out = torch.empty((w.shape[0], h.shape[0]), dtype=h.dtype, device=h.device)
        ht = h.t().contiguous()
        for j in range(0, w.shape[0], self.BLOCK):
            torch.mm(w[j:j + self.BLOCK], ht, out=out[j:j + self.BLOCK])
        return out.t()

    # the choice --------------------------------------------------------------------------------------------
    def _ident(self) -> str:
        return f"{tuple(self.weight.shape)}|{self.weight.dtype}|{','.join(self.layouts)}"

    def _saved(self) -> dict[int, str]:
        return {k: v for k, v in _load_choices("lm_head", self._ident()).items() if v in self.layouts}

    def _save(self) -> None:
        _save_choices("lm_head", self._ident(), self.choice)

    def _choose(self, h: torch.Tensor) -> str:
        import time

        times: dict[str, float] = {}
        for name, fn in self.layouts.items():
            fn(h)  # warm-up
            t0 = time.perf_counter()
            fn(h)
            times[name] = (time.perf_counter() - t0) * 1000
        self.timings[h.shape[0]] = times
        return min(times, key=times.__getitem__)

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """[rows, 1, D] hidden states -> [rows, 1, V] logits (softcapped like the model's own head); sampling
        only, so never under autograd (the ``out=`` layouts could not be)."""
        h = hidden[:, -1, :]
        rows = h.shape[0]
        if self.probe and rows not in self.choice:
            self.choice[rows] = self._choose(h)
            self._save()
        logits = self.layouts[self.choice.get(rows, "linear")](h)
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits[:, None, :]


_FAST_TOKENIZERS: dict[str, Any] = {}


class _FastTokenizer:
    """The calls the engine and the retrievers make of a tokenizer, answered by the ``tokenizers`` library from a
    local ``tokenizer.json`` (no transformers loader): for quick checks, never for scoring."""

    def __init__(self, tk: Any, path: str, config: dict) -> None:
        self.tk, self.name_or_path = tk, path
        self.eos_token_id = self._id(config.get("eos_token"))
        self.bos_token_id = self._id(config.get("bos_token"))
        self.pad_token_id = self._id(config.get("pad_token"))

    def _id(self, token: Any) -> int | None:
        token = token.get("content") if isinstance(token, dict) else token
        return self.tk.token_to_id(token) if isinstance(token, str) else None

    @classmethod
    def load(cls, pretrained: str) -> _FastTokenizer | None:
        """The tokenizer of a local folder (once per process), None without a ``tokenizer.json``."""
        if pretrained not in _FAST_TOKENIZERS:
            _FAST_TOKENIZERS[pretrained] = cls._load(pretrained)
        return _FAST_TOKENIZERS[pretrained]

    @classmethod
    def _load(cls, pretrained: str) -> _FastTokenizer | None:
        import json
        from pathlib import Path

        folder = Path(pretrained)
        if not (folder / "tokenizer.json").is_file():
            return None
        try:
            from tokenizers import Tokenizer

            config = json.loads((folder / "tokenizer_config.json").read_text()) \
                if (folder / "tokenizer_config.json").is_file() else {}
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), str(folder), config)
        except Exception:  # noqa: BLE001 - any problem: the transformers tokenizer instead
            return None

    def __call__(self, text: Any, add_special_tokens: bool = True) -> Any:
        from types import SimpleNamespace

        if isinstance(text, list):
            ids = [e.ids for e in self.tk.encode_batch(text, add_special_tokens=add_special_tokens)]
            return {"input_ids": ids}
        return SimpleNamespace(input_ids=self.tk.encode(text, add_special_tokens=add_special_tokens).ids)

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.tk.id_to_token(i) for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=skip_special_tokens)


def weights_key(pretrained: str, *, device: str | None = None, dtype: Any = "auto", revision: str | None = None,
                trust_remote_code: bool = False, adapter: str | None = None, merge_adapter: bool = False) -> tuple:
    """What determines a model's loaded weights (the :data:`WEIGHTS` key): name or folder, dtype, device, revision,
    remote code, adapter and whether it is merged."""
    dev = resolve_device(device)
    return (str(pretrained), str(resolve_dtype(dtype, dev)), str(dev), revision, bool(trust_remote_code), adapter,
            bool(merge_adapter))


def _load_weights(pretrained: str, dt: torch.dtype, dev: torch.device, revision: str | None, trust_remote_code: bool,
                  adapter: str | None, merge_adapter: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    tok = tokenizer(pretrained, revision, trust_remote_code)  # one per process, shared with the length filters
    model = AutoModelForCausalLM.from_pretrained(pretrained, revision=revision, dtype=dt,
                                                 trust_remote_code=trust_remote_code)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        if merge_adapter:  # fold the LoRA deltas into the weights: same outputs, half the matmuls per step
            model = model.merge_and_unload()
    return model.to(dev).eval(), tok


class WeightCache:
    """Loaded models by what determines them (name, dtype, device, revision, adapter): a process loads each once.
    Entries beyond :attr:`keep` are dropped least recently used first; the leaderboard keeps what its remaining
    cells need and releases the rest (:meth:`retain`), so the largest set that must coexist is the peak.
    :attr:`loads` counts real loads (reported by the leaderboard benchmark)."""

    def __init__(self, keep: int = 2) -> None:
        from collections import OrderedDict

        self.keep = keep
        self._entries: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
        self.loads: list[tuple] = []

    def get(self, key: tuple, load: Any) -> tuple[Any, Any]:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = load()
        self.loads.append(key)
        self._entries[key] = value
        while len(self._entries) > self.keep:
            victim = next((k for k in self._entries if k != key), None)
            if victim is None:
                break
            del self._entries[victim]
        return value

    def retain(self, keys: set[tuple] | None = None) -> None:
        """Drop every entry not in ``keys`` (all with None) and free its memory."""
        import gc

        for k in [k for k in self._entries if keys is None or k not in keys]:
            del self._entries[k]
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


WEIGHTS = WeightCache()


class Engine:
    """Prefix-cached sampler/scorer over one causal LM (see module docstring)."""

    def __init__(self, model, tokenizer, *, device: torch.device, max_rows: int = 24,
                 max_length: int | None = None, weights_key: tuple | None = None) -> None:
        self.model = model.eval()
        self.device = device
        self.trunk, self.head = LMHead.split(model, device)
        self.linears = TrunkLinears.attach(self.trunk, device)  # None without a split trunk (trunk None)
        # what determines the weights (name, dtype, device, revision, adapter): names stored candidates
        self.weights_key = weights_key or (str(getattr(model.config, "_name_or_path", "")), str(model.dtype),
                                           str(device))
        self.max_rows = max_rows
        self._init_tokens(tokenizer, max_length or getattr(model.config, "max_position_embeddings", None))
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    @classmethod
    def tokenizer_only(cls, pretrained: str, *, revision: str | None = None, trust_remote_code: bool = False,
                       max_length: int | None = None, fast: bool = False) -> Engine:
        """An engine with the model's tokenizer and length limit but no weights: it tokenizes and builds
        contexts (``show-prompt``, the checks a run makes before it loads anything) but cannot run the model.
        ``fast``: count with the ``tokenizers`` library straight from ``tokenizer.json`` when the folder has one
        (seconds faster than transformers' loader; for checks that allow a margin)."""
        from transformers import AutoConfig

        tok = (_FastTokenizer.load(pretrained) if fast else None) or tokenizer(pretrained, revision,
                                                                                 trust_remote_code)
        config = AutoConfig.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
        self = cls.__new__(cls)
        self.model, self.device, self.max_rows, self.weights_key = None, torch.device("cpu"), 0, (pretrained,)
        self.trunk = self.head = self.linears = None
        self._init_tokens(tok, max_length or getattr(config, "max_position_embeddings", None)
                          or getattr(getattr(config, "text_config", None), "max_position_embeddings", None))
        self.eos_ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        return self

    def _init_tokens(self, tokenizer, max_length: int | None) -> None:
        self.tok = tokenizer
        self.max_length = max_length or 4096
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        # the token a scored continuation ends with (the released scorer appends tokenizer.eos_token_id)
        self.score_eos_id: int | None = tokenizer.eos_token_id
        self.add_bos = bool(getattr(tokenizer, "bos_token_id", None) is not None and
                            tokenizer("a", add_special_tokens=True).input_ids[:1] == [tokenizer.bos_token_id])

    @classmethod
    def load(cls, pretrained: str, *, device: str | None = None, dtype: str | None = "auto",
             revision: str | None = None, trust_remote_code: bool = False, adapter: str | None = None,
             merge_adapter: bool = False, max_rows: int = 24, max_length: int | None = None) -> Engine:
        """An engine over ``pretrained`` (+ the peft ``adapter``, its LoRA deltas folded into the weights with
        ``merge_adapter``). Weights are loaded once per process and shared (:data:`WEIGHTS`); each engine keeps its
        own ``max_rows`` / ``max_length``."""
        key = weights_key(pretrained, device=device, dtype=dtype, revision=revision,
                          trust_remote_code=trust_remote_code, adapter=adapter, merge_adapter=merge_adapter)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        model, tok = WEIGHTS.get(key, lambda: _load_weights(pretrained, dt, dev, revision, trust_remote_code,
                                                            adapter, merge_adapter))
        return cls(model, tok, device=dev, max_rows=max_rows, max_length=max_length, weights_key=key)

    def generation_defaults(self) -> tuple[float, int]:
        """(temperature, top_k) the model's own ``generation_config`` asks for, with transformers' defaults
        (1.0, 50) where it sets none: what HF ``generate`` samples with unless told otherwise."""
        from transformers import GenerationConfig

        gc = getattr(self.model, "generation_config", None)
        defaults = getattr(GenerationConfig, "_get_default_generation_params", lambda: {})()
        temp = getattr(gc, "temperature", None)
        top_k = getattr(gc, "top_k", None)
        return (float(temp if temp is not None else defaults.get("temperature", 1.0)),
                int(top_k if top_k is not None else defaults.get("top_k", 50)))

    # ----------------------------------------------------------------- tokenization
    def encode_context(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=True).input_ids

    def encode_continuation(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    # ----------------------------------------------------------------- model calls
    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache, keep: int):
        """Logits at the last ``keep`` positions (all with 0) and the updated cache. With a split model (trunk +
        plain linear head, :class:`LMHead`) the vocabulary projection of a decode step (one position per row)
        runs in the layout the head measured fastest for that many rows, the trunk's linear layers in the kernel
        measured fastest (:class:`TrunkLinears`); anything else is the model's forward."""
        if self.head is not None and keep == 1:
            out = self.trunk_step(ids, mask, pos, cache)
            return self.head(out.last_hidden_state[:, -1:, :]), _cache_of(out)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=keep,
                         **{_CACHE_ARG: cache})
        return out.logits, _cache_of(out)

    def trunk_step(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> Any:
        """The trunk (no head) on one decode step, its linear layers in the kernel measured fastest for the row
        count (:class:`TrunkLinears`)."""
        ctx = self.linears.decode(ids.shape[0]) if self.linears is not None else contextlib.nullcontext()
        with ctx:
            return self.trunk(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                              **{_CACHE_ARG: cache})

    def _prefill(self, contexts: list[list[int]]) -> Rows:
        """Prefill of several contexts as one left-padded batch (:class:`Rows`). Contexts of different lengths
        are encoded one by one (no compute spent on padding: prefill is compute-bound) and their caches merged,
        left-padded, when the cache layout allows it."""
        width = max(len(c) for c in contexts)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for r, c in enumerate(contexts):
            mask[r, width - len(c):] = 1
        mask = mask.to(self.device)
        lengths = torch.tensor([len(c) for c in contexts], device=self.device)
        if len(contexts) > 1 and len(set(map(len, contexts))) > 1:
            parts = [self._prefill_padded([c]) for c in contexts]
            merged = _merge_left_padded([p[1] for p in parts], width)
            if merged is not None:
                return Rows(torch.cat([p[0] for p in parts]), merged, mask, lengths)
        logits, cache = self._prefill_padded(contexts)
        return Rows(logits, cache, mask, lengths)

    def _prefill_padded(self, contexts: list[list[int]]):
        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for r, c in enumerate(contexts):
            ids[r, width - len(c):] = torch.tensor(c)
            mask[r, width - len(c):] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        ids, mask, pos = ids.to(self.device), mask.to(self.device), pos.to(self.device)
        logits, cache = self._forward(ids, mask, pos, None, keep=1)
        return logits[:, -1, :], cache

    def _check_length(self, n_ctx: int, n_new: int, what: str) -> None:
        if n_ctx + n_new > self.max_length:
            raise ValueError(f"{what}: {n_ctx} context tokens + {n_new} new tokens exceed the model's "
                             f"max length {self.max_length}")

    # ----------------------------------------------------------------- sampling
    @torch.inference_mode()
    def sample(self, contexts: list[str], n: int, *, max_new_tokens: int = 128, top_p: float = 1.0,
               top_k: int = 0, temperature: float = 1.0, do_sample: bool = True,
               seeds: Sequence[int] | None = None, stop: Sequence[str] = (), docs_per_batch: int | None = None,
               names: Sequence[str] | None = None, params: SamplingParams | None = None,
               forced: Sequence[Sequence[int]] | None = None) -> list[list[Sample]]:
        """``n`` continuations of each context. Each context is prefilled once; rows of up to
        ``docs_per_batch`` contexts decode together. ``seeds[i]`` seeds context i's rows. ``params``, when
        given, replaces the individual sampling keywords. ``forced[i * n + j]``: row j of context i takes these
        tokens instead of drawing (then EOS), with every log-prob computed as in sampling (a replay: tests, and
        scoring given candidates exactly as the generation path does)."""
        p = params or SamplingParams(max_new_tokens=max_new_tokens, top_p=top_p, top_k=top_k,
                                    temperature=temperature, do_sample=do_sample, stop=tuple(stop))
        seeds = list(seeds) if seeds is not None else [stable_seed(c) for c in contexts]
        ids = [self.encode_context(c) for c in contexts]
        for i, c in enumerate(ids):
            self._check_length(len(c), p.max_new_tokens, names[i] if names else f"context {i}")
        per = docs_per_batch or max(1, self.max_rows // max(n, 1))
        out: list[list[Sample]] = []
        for s in range(0, len(ids), per):
            out += self._sample_batch(ids[s:s + per], seeds[s:s + per], n, p,
                                      None if forced is None else forced[s * n:(s + per) * n])
        return out

    def _sample_batch(self, ctx_ids: list[list[int]], seeds: Sequence[int], n: int, p: SamplingParams,
                      forced: Sequence[Sequence[int]] | None = None) -> list[list[Sample]]:
        rows = self._prefill(ctx_ids).repeat(n)
        gens = [row_generator(seed, j) for seed in seeds for j in range(n)]
        samples, _ = self._decode(rows, gens, p, forced)
        return [samples[d * n:(d + 1) * n] for d in range(len(ctx_ids))]

    def _decode(self, start: Rows, gens: list[torch.Generator], p: SamplingParams,
                forced: Sequence[Sequence[int]] | None = None):
        """The decode loop shared by :meth:`sample` and :class:`Session`: row r starts in batch slot r of
        ``start`` and draws from ``gens[r]``; finished rows leave the batch.

        Returns the samples and ``(cache, active)``: the cache of the rows still in the batch at the end
        (``active[slot]`` = row), holding each such row's tokens except the last one sampled (never fed).
        """
        logits, cache, mask, next_pos = start
        rows = len(gens)
        stop = list(p.stop)
        toks: list[list[int]] = [[] for _ in range(rows)]
        lps: list[list[float]] = [[] for _ in range(rows)]
        eos_lps: list[list[float]] = [[] for _ in range(rows)]
        reason = ["length"] * rows
        active = list(range(rows))  # row index of each batch slot
        for step in range(p.max_new_tokens):
            if step < p.min_new_tokens and self.eos_ids:
                logits = logits.clone()
                logits[:, list(self.eos_ids)] = -torch.inf
            logp = torch.log_softmax(logits.float(), dim=-1)
            if forced is not None:
                eos_id = min(self.eos_ids)
                nxt = torch.tensor([forced[r][step] if step < len(forced[r]) else eos_id for r in active],
                                   device=logits.device)
            elif not p.greedy:
                u = torch.stack([torch.rand((), generator=gens[r]) for r in active])
                scaled = logits if p.temperature == 1.0 else logits.float() / p.temperature
                nxt = top_p_choice(scaled, p.top_p, u.to(logits.device), p.top_k)
            else:
                nxt = logits.argmax(-1)
            chosen_lp = logp.gather(-1, nxt[:, None]).squeeze(-1).tolist()
            eos_lp = logp[:, self.score_eos_id].tolist() if self.score_eos_id is not None else None
            nxt_list = nxt.tolist()
            keep_slots = []
            for slot, r in enumerate(active):
                t = nxt_list[slot]
                if eos_lp is not None:
                    eos_lps[r].append(eos_lp[slot])
                if t in self.eos_ids:
                    reason[r] = "eos"
                    continue
                toks[r].append(t)
                lps[r].append(chosen_lp[slot])
                if stop and any(sw in self.decode(toks[r][-12:]) for sw in stop):
                    reason[r] = "stop"
                    continue
                keep_slots.append(slot)
            if not keep_slots or step == p.max_new_tokens - 1:
                break
            if len(keep_slots) < len(active):
                sel = torch.tensor(keep_slots, device=self.device)
                cache.batch_select_indices(sel)
                mask, next_pos, nxt = mask[sel], next_pos[sel], nxt[sel]
                active = [active[s] for s in keep_slots]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            logits, cache = self._forward(nxt[:, None], mask, next_pos[:, None], cache, keep=1)
            logits = logits[:, -1, :]
            next_pos = next_pos + 1
        samples = [Sample(toks[r], lps[r], self.decode(toks[r]), reason[r], eos_lps[r]) for r in range(rows)]
        return samples, (cache, active)

    # ----------------------------------------------------------------- scoring
    @torch.inference_mode()
    def logprobs(self, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                 names: Sequence[str] | None = None) -> list[list[float]]:
        """Sum of token log-probs of each continuation given its context.

        ``continuations[i]`` are all scored under ``contexts[i]`` (prefilled once, cache expanded
        across them, one batched pass over the cached prefix). Contexts are batched together while
        their continuations fit in ``max_rows`` rows. Empty continuations score 0.0.
        """
        ctx_ids = [self.encode_context(c) for c in contexts]
        cont_ids = [[self.encode_continuation(t) for t in conts] for conts in continuations]
        return self.logprobs_ids(ctx_ids, cont_ids, names=names)

    @torch.inference_mode()
    def logprobs_ids(self, ctx_ids: list[list[int]], cont_ids: list[list[list[int]]],
                     names: Sequence[str] | None = None) -> list[list[float]]:
        for i, (c, conts) in enumerate(zip(ctx_ids, cont_ids)):
            longest = max((len(x) for x in conts), default=0)
            self._check_length(len(c), longest, names[i] if names else f"context {i}")
        results: list[list[float]] = [[0.0] * len(conts) for conts in cont_ids]
        # group contexts so that one pass holds at most max_rows continuation rows
        group: list[int] = []
        rows = 0
        for i, conts in enumerate(cont_ids):
            m = sum(1 for x in conts if x)
            if group and rows + m > self.max_rows:
                self._score_group(group, ctx_ids, cont_ids, results)
                group, rows = [], 0
            group.append(i)
            rows += m
        if group:
            self._score_group(group, ctx_ids, cont_ids, results)
        return results

    def _score_group(self, group, ctx_ids, cont_ids, results) -> None:
        items = [(gi, j, cont_ids[i][j]) for gi, i in enumerate(group) for j in range(len(cont_ids[i]))
                 if cont_ids[i][j]]
        if not items:
            return
        for s in range(0, len(items), self.max_rows):
            chunk = items[s:s + self.max_rows]
            sel = torch.tensor([gi for gi, _, _ in chunk], device=self.device)
            rows = self._prefill([ctx_ids[i] for i in group]).select(sel)
            tot = self._score_cached(rows, [c for _, _, c in chunk])
            for r, (gi, j, _) in enumerate(chunk):
                results[group[gi]][j] = float(tot[r])

    def _score_cached(self, rows: Rows, conts: list[list[int]]) -> torch.Tensor:
        """Sum of log-probs of each (non-empty) ``conts[r]`` in one pass over ``rows``, whose row r already holds
        its context."""
        first_logits, cache, mask, next_pos = rows
        first_logp = torch.log_softmax(first_logits.float(), -1)
        width = max(len(c) for c in conts)
        # token log-probs summed in float32, as a plain forward pass (and the released scorer) sums them
        tot = first_logp.gather(-1, torch.tensor([[c[0]] for c in conts], device=self.device)).squeeze(-1)
        if width > 1:
            inp = torch.full((len(conts), width - 1), self.pad_id, dtype=torch.long)
            tgt = torch.zeros((len(conts), width - 1), dtype=torch.long)
            valid = torch.zeros((len(conts), width - 1), dtype=torch.bool)
            for r, c in enumerate(conts):
                inp[r, :len(c) - 1] = torch.tensor(c[:-1])
                tgt[r, :len(c) - 1] = torch.tensor(c[1:])
                valid[r, :len(c) - 1] = True
            inp, tgt, valid = inp.to(self.device), tgt.to(self.device), valid.to(self.device)
            m = torch.cat([mask, valid.long()], dim=-1)
            pos = next_pos[:, None] + torch.arange(width - 1, device=self.device)[None, :]
            lg, _ = self._forward(inp, m, pos, cache, keep=0)
            lp = torch.log_softmax(lg.float(), -1).gather(-1, tgt[..., None]).squeeze(-1)
            tot = tot + (lp * valid).sum(-1)
        return tot

    def session(self, context: str | Sequence[int], *, seed: int = 0) -> Session:
        """A :class:`Session` over ``context`` (text, encoded like :meth:`encode_context`, or token ids)."""
        ids = self.encode_context(context) if isinstance(context, str) else list(context)
        return Session(self, ids, seed=seed)

    # ----------------------------------------------------------------- reference
    @torch.inference_mode()
    def logprob_full_forward(self, context: str, continuation: str) -> float:
        """Plain, uncached full forward pass of context + continuation (the reference for tests)."""
        c = self.encode_context(context)
        y = self.encode_continuation(continuation)
        if not y:
            return 0.0
        ids = torch.tensor([c + y], device=self.device)
        # the whole sequence, no cache; vocabulary logits only at the len(y)+1 final positions
        logits = self.model(input_ids=ids, logits_to_keep=len(y) + 1).logits[0, :-1].float()
        return float(torch.log_softmax(logits, -1).gather(-1, torch.tensor(y, device=self.device)[:, None]).sum())


class Session:
    """One growing token sequence and its KV cache (blockwise decoding, e.g. RM-Aug).

    Only tokens never seen by the model are ever fed to it: the prefix is encoded once, then

    * :meth:`append` adds tokens (fed lazily, in one pass, by the next :meth:`sample` / :meth:`logprobs`);
    * :meth:`sample` draws ``n`` continuations: the cache is expanded across the ``n`` rows and decoded like
      :meth:`Engine.sample` (row j draws from ``row_generator(seed, j)``, so a first block equals
      ``Engine.sample(..., seeds=[seed])``; each row's generator persists, later blocks draw fresh numbers);
    * :meth:`accept` continues with one sampled row: its branch of the cache is kept (select, no crop, which
      would break on full sliding-window layers), the other rows are dropped;
    * :meth:`logprobs` scores continuations of the current sequence in one batched pass over a copy of the
      cache (equal to a plain full forward pass of sequence + continuation).
    """

    def __init__(self, engine: Engine, ctx_ids: Sequence[int], *, seed: int = 0) -> None:
        if not ctx_ids:
            raise ValueError("a Session needs a non-empty context")
        self.engine = engine
        self.ids: list[int] = list(ctx_ids)  # the whole sequence
        self.seed = seed
        self._fed = 0  # tokens of self.ids already in the cache
        self._cache = None
        self._logits: torch.Tensor | None = None  # [1, V] next-token logits after the fed tokens
        self._branch: tuple | None = None  # (cache, active, samples) of the last sample() until accept()
        self._gens: list[torch.Generator] = []

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, ids: Sequence[int]) -> None:
        self._check_open()
        self.ids += list(ids)

    def _check_open(self) -> None:
        if self._branch is not None:
            raise RuntimeError("Session: accept() one of the sampled rows before appending, sampling or scoring")

    def _flush(self) -> None:
        """Feed the tokens appended since the last call (one row, one pass)."""
        if self._fed == len(self.ids):
            return
        eng = self.engine
        eng._check_length(len(self.ids), 0, "session")
        new = torch.tensor([self.ids[self._fed:]], device=eng.device)
        mask = torch.ones((1, len(self.ids)), dtype=torch.long, device=eng.device)
        pos = torch.arange(self._fed, len(self.ids), device=eng.device)[None, :]
        logits, self._cache = eng._forward(new, mask, pos, self._cache, keep=1)
        self._logits = logits[:, -1, :]
        self._fed = len(self.ids)

    @torch.inference_mode()
    def sample(self, n: int, max_new_tokens: int, *, top_p: float = 1.0, top_k: int = 0, temperature: float = 1.0,
               do_sample: bool = True, stop: Sequence[str] = ()) -> list[Sample]:
        """``n`` continuations of the current sequence (then :meth:`accept` one of them to continue)."""
        self._check_open()
        self._flush()
        eng = self.engine
        p = SamplingParams(max_new_tokens=max_new_tokens, top_p=top_p, top_k=top_k,
                                    temperature=temperature, do_sample=do_sample, stop=tuple(stop))
        eng._check_length(len(self.ids), max_new_tokens, "session")
        while len(self._gens) < n:
            self._gens.append(row_generator(self.seed, len(self._gens)))
        cache, logits = self._cache, self._logits
        self._cache = None  # the rows' branches replace it (accept() keeps one)
        one = Rows(logits, cache, torch.ones((1, len(self.ids)), dtype=torch.long, device=eng.device),
                   torch.full((1,), len(self.ids), dtype=torch.long, device=eng.device))
        samples, (cache, active) = eng._decode(one.repeat(n), self._gens[:n], p)
        self._branch = (cache, active, samples)
        return samples

    @torch.inference_mode()
    def accept(self, row: int) -> None:
        """Continue with sampled row ``row`` (its tokens join the sequence)."""
        if self._branch is None:
            raise RuntimeError("Session.accept() without a preceding sample()")
        cache, active, samples = self._branch
        self._branch = None
        toks = samples[row].token_ids
        if row in active and samples[row].stop_reason != "eos":
            cache.batch_select_indices(torch.tensor([active.index(row)], device=self.engine.device))
            self._cache = cache
            self._fed = cache.get_seq_length()  # the row's tokens but the last one sampled are cached
            self._logits = None  # set by the next _flush (the last token is never fed during sampling)
        else:  # the row ended (EOS, or left the batch early): rare, the next call re-encodes the sequence
            self._cache, self._logits, self._fed = None, None, 0
        self.ids += toks

    @torch.inference_mode()
    def logprobs(self, conts: Sequence[Sequence[int]]) -> list[float]:
        """log p(cont | sequence) of each token list (empty -> 0.0), one batched pass per max_rows chunk."""
        self._check_open()
        self._flush()
        eng = self.engine
        out = [0.0] * len(conts)
        todo = [i for i, c in enumerate(conts) if c]
        if todo:
            eng._check_length(len(self.ids), max(len(conts[i]) for i in todo), "session")
        for s in range(0, len(todo), eng.max_rows):
            chunk = todo[s:s + eng.max_rows]
            cache = copy.deepcopy(self._cache)
            cache.batch_select_indices(torch.zeros(len(chunk), dtype=torch.long, device=eng.device))
            rows = Rows(self._logits.expand(len(chunk), -1), cache,
                        torch.ones((len(chunk), len(self.ids)), dtype=torch.long, device=eng.device),
                        torch.full((len(chunk),), len(self.ids), dtype=torch.long, device=eng.device))
            tot = eng._score_cached(rows, [list(conts[i]) for i in chunk])
            for r, i in enumerate(chunk):
                out[i] = float(tot[r])
        return out
