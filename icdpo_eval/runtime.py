"""Mechanisms every layer shares, each written once: device and dtype resolution, the hub-availability probe,
and atomic writes under a file lock (every on-disk cache of the package uses :func:`locked` +
:func:`atomic_write`).

Imports only :mod:`icdpo_eval.config.settings`; torch, filelock and huggingface_hub are imported where used.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from icdpo_eval.config import settings

log = logging.getLogger(__name__)

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def resolve_device(device: str | None) -> Any:
    """``None`` / "" / "auto" -> CUDA when present, else CPU; a CUDA request falls back to CPU when there is no
    CUDA (lm-eval's CLI passes ``cuda:0`` by default even on CPU-only machines). Returns a ``torch.device``."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.info("CUDA requested (%s) but not available: using CPU", device)
        return torch.device("cpu")
    return dev


def canonical_dtype(dtype: str | None, *, auto: str | None = None) -> str:
    """``"float32"`` / ``"bfloat16"`` / ``"float16"`` for any accepted spelling; ``auto`` (or None) gives
    ``auto`` when that is set, else float32."""
    key = (dtype or "auto").strip().lower().removeprefix("torch.")
    if key == "auto":
        return auto or "float32"
    if key not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of: auto, {', '.join(DTYPES)}")
    return DTYPES[key]


def resolve_dtype(dtype: Any, device: Any) -> Any:
    """A ``torch.dtype``: ``auto`` = bf16 on CUDA, fp32 on CPU (measured faster there for scoring passes)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    auto = "bfloat16" if getattr(device, "type", str(device)).startswith("cuda") else "float32"
    return getattr(torch, canonical_dtype(dtype, auto=auto))


_HUB_AVAILABLE: dict[str, bool] = {}


def hub_model_available(repo: str, timeout: float = 5.0) -> bool:
    """Whether hub model ``repo`` can be loaded: in the local HF cache, or (unless offline) the hub answers for
    it. Memoised per process (one network probe at most per name)."""
    if repo in _HUB_AVAILABLE:
        return _HUB_AVAILABLE[repo]
    ok = False
    try:
        from huggingface_hub import try_to_load_from_cache

        ok = any(isinstance(try_to_load_from_cache(repo, f), str) for f in ("config.json", "modules.json"))
    except Exception:  # noqa: BLE001 - any cache problem means "not cached"
        ok = False
    if not ok and not settings.hub_offline():
        try:
            from huggingface_hub import HfApi

            HfApi().model_info(repo, timeout=timeout)
            ok = True
        except Exception:  # noqa: BLE001 - unreachable hub, auth, DNS, ...
            ok = False
    _HUB_AVAILABLE[repo] = ok
    return ok


_TOKENIZERS: dict[tuple, Any] = {}


def tokenizer(pretrained: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The transformers tokenizer of ``pretrained``, loaded once per process: the engine, the run's checks and the
    tasks' length filters share it (Gemma-3's 262k-token tokenizer takes seconds to load)."""
    key = (str(pretrained), revision, trust_remote_code)
    if key not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(str(pretrained), revision=revision,
                                                         trust_remote_code=trust_remote_code)
    return _TOKENIZERS[key]


def cache_path(*parts: str) -> Path:
    """A path under the cache dir (``$ICDPO_CACHE_DIR``), its folder created."""
    p = settings.cache_dir().joinpath(*parts)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the inter-process lock ``<path>.lock`` (``filelock``) while building what lives at ``path``."""
    from filelock import FileLock

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(p) + ".lock"):
        yield


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], None], *, binary: bool = False) -> None:
    """Write ``path`` through ``write(fh)`` into a temporary file beside it, then rename it into place: a reader
    sees the old file or the whole new one, never a part (a failed write leaves no temporary file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if binary else "w"
    kwargs = {} if binary else {"encoding": "utf-8"}
    fh = tempfile.NamedTemporaryFile(mode, dir=p.parent, prefix=p.name + ".", suffix=".tmp", delete=False, **kwargs)
    try:
        with fh:
            write(fh)
        os.replace(fh.name, p)
    except BaseException:
        Path(fh.name).unlink(missing_ok=True)
        raise


def atomic_write_dir(path: str | os.PathLike[str], build: Callable[[Path], None]) -> None:
    """Build a folder in ``<path>.tmp`` through ``build(tmp)``, then rename it to ``path`` (a half-built folder is
    never seen under ``path``)."""
    import shutil

    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    shutil.rmtree(p, ignore_errors=True)
    tmp.rename(p)


# the current lm-eval run's explicit --gen_kwargs and --metadata (set by the registration hook's wrapper of
# simple_evaluate), so that a model tells the user's settings from the task's defaults (an explicit setting always
# wins) and reads a task setting it depends on (ARGS's guiding RM is the task's rm)
_RUN_GEN_KWARGS: dict[str, Any] = {}
_RUN_METADATA: dict[str, Any] = {}


def explicit_gen_kwargs() -> dict[str, Any]:
    return dict(_RUN_GEN_KWARGS)


def run_metadata() -> dict[str, Any]:
    return dict(_RUN_METADATA)


@contextmanager
def run_gen_kwargs(gen_kwargs: dict[str, Any] | None, metadata: dict[str, Any] | None = None) -> Iterator[None]:
    saved = dict(_RUN_GEN_KWARGS), dict(_RUN_METADATA)
    _RUN_GEN_KWARGS.clear()
    _RUN_GEN_KWARGS.update(gen_kwargs or {})
    _RUN_METADATA.clear()
    _RUN_METADATA.update(metadata or {})
    try:
        yield
    finally:
        for store, old in zip((_RUN_GEN_KWARGS, _RUN_METADATA), saved):
            store.clear()
            store.update(old)


class SqliteStore:
    """One sqlite file of the on-disk stores (the judge's verdicts, the sampled candidates): safe across threads
    (one connection behind a lock) and across processes (sqlite's file locking, write-ahead log). ``schema`` is the
    ``CREATE TABLE IF NOT EXISTS`` statement; :meth:`query` runs one statement under the lock, returning its rows."""

    def __init__(self, path: str | os.PathLike[str], schema: str) -> None:
        import sqlite3
        import threading

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(schema)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Meter:
    """What this process's models spend, in one place (the engine, the reward models and the API client add to it;
    :mod:`icdpo_eval.models.compute` turns a span of it into a document's record). Per model label, counters:

    * ``calls``: forward passes; ``prefill_tokens`` / ``decode_tokens`` / ``score_tokens``: the positions those passes
      processed (a prefill feeds a context, a decode step one position per batch row, a scoring pass the
      continuations), padding included, and ``padding_tokens`` how many of them were padding;
    * ``cached_tokens``: context positions a row read from a KV cache it did not compute (a context prefilled once and
      expanded over r rows counts (r - 1) x its length; a copied shared prefix counts its length per copy);
    * ``generated_tokens``: tokens drawn (one per row and decode step, EOS included);
    * ``rm_calls``: responses a reward model scored; ``api_calls``: requests to an OpenAI-compatible API;
    * ``reused_*``: what candidates served from the candidate store cost when they were drawn (not spent here).
    """

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def add(self, model: str, **n: int) -> None:
        c = self.counts[model]
        for k, v in n.items():
            if v:
                c[k] += v

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {m: dict(c) for m, c in self.counts.items()}

    def since(self, snap: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        """What was added after ``snap`` (:meth:`snapshot`), per model; models with nothing added are left out."""
        out = {}
        for m, c in self.counts.items():
            old = snap.get(m, {})
            d = {k: v - old.get(k, 0) for k, v in c.items() if v != old.get(k, 0)}
            if d:
                out[m] = d
        return out


METER = Meter()


def count_forwards(module: Any, label: str) -> Any:
    """Count every forward pass of a torch ``module`` that is not one of the engine's (a reward model's) in
    :data:`METER` under ``label``: a call, its ``input_ids`` positions as scoring positions, the padding apart. Returns
    the hook's handle (``.remove()``)."""

    def hook(_module: Any, args: tuple, kwargs: dict) -> None:
        if args and hasattr(args[0], "get") and "input_ids" in args[0]:  # sentence-transformers: forward(features)
            kwargs = args[0]
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None or not hasattr(ids, "numel"):
            return
        mask = kwargs.get("attention_mask")
        pad = int(ids.numel() - mask.sum()) if mask is not None and hasattr(mask, "sum") else 0
        METER.add(label, calls=1, score_tokens=int(ids.numel()), padding_tokens=pad)

    return module.register_forward_pre_hook(hook, with_kwargs=True)


# Freeing the policy before the scorer loads (issue 33): during an lm-eval run whose model lm-eval itself built from
# its name (nobody else holds it), the engines built in the run drop their weights when the run's reward model is
# about to load (aggregation: every request is answered by then); weights in ``keep`` (a leaderboard's later cells
# need them) stay.
_POLICY: dict[str, Any] = {"release": False, "keep": None, "engines": None}


@contextmanager
def policy_run(release: bool) -> Iterator[None]:
    """One lm-eval run: engines built inside are this run's; ``release``: they may be freed before scoring."""
    import weakref

    saved = dict(_POLICY)
    _POLICY.update(release=release, engines=weakref.WeakSet())
    try:
        yield
    finally:
        _POLICY.update(release=saved["release"], engines=saved["engines"])


@contextmanager
def keep_weights(keys: set[tuple]) -> Iterator[None]:
    """Within the block, a run frees only weights not in ``keys`` (what a leaderboard's remaining cells need)."""
    saved = _POLICY["keep"]
    _POLICY["keep"] = set(keys)
    try:
        yield
    finally:
        _POLICY["keep"] = saved


def run_engine(engine: Any) -> None:
    """An engine built during the current run (the engine registers itself)."""
    if _POLICY["engines"] is not None:
        _POLICY["engines"].add(engine)


def release_policy() -> int:
    """Free the current run's engines' weights if the run allows it (:func:`policy_run`), except those to keep; returns
    how many engines let go of their weights."""
    if not _POLICY["release"] or not _POLICY["engines"]:
        return 0
    keep = _POLICY["keep"] or set()
    freed = [e for e in list(_POLICY["engines"])
             if getattr(e, "model", None) is not None and e.weights_key not in keep]
    for engine in freed:
        engine.release()
    if freed:
        freed[0].free_unused(keep)  # the process's weight cache, and the CUDA cache
        log.info("freed the weights of %d engine(s) before the scorer loads", len(freed))
    return len(freed)
