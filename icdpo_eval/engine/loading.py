"""Loading what the engine runs on, once per process: weights (:data:`WEIGHTS`, keyed by :func:`weights_key`),
tokenizers (the transformers one from :func:`icdpo_eval.runtime.tokenizer`, the quick ``tokenizers``-only one of
:class:`FastTokenizer` for checks), and the shims over transformers' API that the engine and the benchmark share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
