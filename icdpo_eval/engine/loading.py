"""Loading what the engine runs on, once per process: weights (:data:`WEIGHTS`, keyed by :func:`weights_key`),
tokenizers (the transformers one from :func:`icdpo_eval.runtime.tokenizer`, the quick ``tokenizers``-only one of
:class:`FastTokenizer` for checks), :class:`LoadedLM` (an engine's construction, tokenization and the plain forward
pass it is tested against), and the shims over transformers' API (the cache argument's name, merging single-row
caches into a left-padded batch) that the engine and the benchmark share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from icdpo_eval.runtime import resolve_device, resolve_dtype, tokenizer


def forward_params(fn: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _cache_arg() -> str:
    """transformers >= 5.24 names the KV cache ``cache`` (``past_key_values`` is deprecated, removed in 5.40)."""
    from transformers.models.llama.modeling_llama import LlamaForCausalLM

    return "cache" if "cache" in forward_params(LlamaForCausalLM.forward) else "past_key_values"


CACHE_ARG = _cache_arg()


def cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def merge_left_padded(caches: list, width: int):
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


def model_label(key: tuple) -> str:
    """A model's name in the counts: its hub name, or its folder's name (+ its adapter's folder name)."""
    name = str(key[0]).rstrip("/")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        name = Path(name).name
    adapter = key[5] if len(key) > 5 else None
    return name + (f"+{Path(str(adapter)).name}" if adapter else "")


_FAST_TOKENIZERS: dict[str, Any] = {}


class FastTokenizer:
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
    def load(cls, pretrained: str) -> FastTokenizer | None:
        """The tokenizer of a local folder (once per process), None without a ``tokenizer.json``."""
        if pretrained not in _FAST_TOKENIZERS:
            _FAST_TOKENIZERS[pretrained] = cls._load(pretrained)
        return _FAST_TOKENIZERS[pretrained]

    @classmethod
    def _load(cls, pretrained: str) -> FastTokenizer | None:
        import json

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
    """What determines a model's loaded weights (the :data:`WEIGHTS` key, and the model in the candidate store's key):
    name or folder, dtype, device, revision, remote code, adapter, whether it is merged, and the adapter's content
    (:func:`adapter_fingerprint`: an adapter retrained in the same folder is another model)."""
    dev = resolve_device(device)
    return (str(pretrained), str(resolve_dtype(dtype, dev)), str(dev), revision, bool(trust_remote_code), adapter,
            bool(merge_adapter), adapter_fingerprint(adapter) if adapter else None)


_FINGERPRINTS: dict[tuple, str] = {}


def adapter_fingerprint(adapter: str) -> str | None:
    """sha256 (16 hex digits) of a local adapter folder's config and weight files, memoised by their sizes and
    modification times (hashed again only when one changes); None for a name that is no local folder (a hub id:
    its revision is what pins it)."""
    import hashlib

    folder = Path(adapter)
    if not folder.is_dir():
        return None
    files = sorted(f for f in folder.iterdir() if f.is_file() and (f.name == "adapter_config.json" or
                                                                   f.name.startswith("adapter_model.")))
    stamp = tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    key = (str(folder.resolve()), stamp)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
        _FINGERPRINTS[key] = h.hexdigest()[:16]
    return _FINGERPRINTS[key]


def load_weights(pretrained: str, dt: torch.dtype, dev: torch.device, revision: str | None, trust_remote_code: bool,
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


LM = TypeVar("LM", bound="LoadedLM")


class LoadedLM:
    """A causal LM as the engine holds it: weights and tokenizer from the process's caches (:meth:`load`), or the
    tokenizer and length limit alone (:meth:`tokenizer_only`), with the tokenization every method shares and the
    plain uncached forward pass that tests hold the engine's cached log-probs to. :class:`~icdpo_eval.engine.Engine`
    (the hot path) is this plus sampling and scoring; its ``__init__`` sets the model, device and kernels."""

    model: Any
    device: torch.device
    kernels: Any
    max_rows: int
    weights_key: tuple
    label: str

    @classmethod
    def tokenizer_only(cls: type[LM], pretrained: str, *, revision: str | None = None, trust_remote_code: bool = False,
                       max_length: int | None = None, fast: bool = False) -> LM:
        """An engine with the model's tokenizer and length limit but no weights: it tokenizes and builds
        contexts (``show-prompt``, the checks a run makes before it loads anything) but cannot run the model.
        ``fast``: count with the ``tokenizers`` library straight from ``tokenizer.json`` when the folder has one
        (seconds faster than transformers' loader; for checks that allow a margin)."""
        from transformers import AutoConfig

        tok = (FastTokenizer.load(pretrained) if fast else None) or tokenizer(pretrained, revision,
                                                                                trust_remote_code)
        config = AutoConfig.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
        self = cls.__new__(cls)
        self.model, self.device, self.max_rows, self.weights_key = None, torch.device("cpu"), 0, (pretrained,)
        self.kernels, self.counts, self.label = None, Counter(), model_label(self.weights_key)
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
    def load(cls: type[LM], pretrained: str, *, device: str | None = None, dtype: str | None = "auto",
             revision: str | None = None, trust_remote_code: bool = False, adapter: str | None = None,
             merge_adapter: bool = False, max_rows: int = 24, max_length: int | None = None,
             kernels: str = "auto") -> LM:
        """An engine over ``pretrained`` (+ the peft ``adapter``, its LoRA deltas folded into the weights with
        ``merge_adapter``). Weights are loaded once per process and shared (:data:`WEIGHTS`); each engine keeps its
        own ``max_rows`` / ``max_length``; ``kernels``: the decode step's strategy (:class:`DecodeKernels`)."""
        key = weights_key(pretrained, device=device, dtype=dtype, revision=revision,
                          trust_remote_code=trust_remote_code, adapter=adapter, merge_adapter=merge_adapter)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        model, tok = WEIGHTS.get(key, lambda: load_weights(pretrained, dt, dev, revision, trust_remote_code,
                                                           adapter, merge_adapter))
        # Engine's __init__ (this class has none of its own)
        return cls(model, tok, device=dev, max_rows=max_rows, max_length=max_length, weights_key=key,  # type: ignore[call-arg]
                   kernels=kernels)

    def release(self) -> None:
        """Let go of the weights (the run's scorer loads next; :func:`icdpo_eval.runtime.release_policy`): what the
        results record of them (dtype, the kernels' choices) is kept; a later model call is an error."""
        if self.model is not None:
            self.kernels_record = self.kernels.record()
        self.model, self.kernels = None, None

    @staticmethod
    def free_unused(keep: set[tuple]) -> None:
        """Drop every loaded weight set not in ``keep`` from the process's cache (and empty the CUDA cache)."""
        WEIGHTS.retain(keep)

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
