"""Demonstration retrievers over a demo pool (ICDPO paper, section 2.4, "R").

A *demo pool* is a list of dicts ``{"prompt", "chosen", "rejected", "id"}``. A retriever maps a
test prompt to ``k`` pool indices, **ordered least similar first, most similar last**, so that
the most similar demo sits right before the test prompt in the in-context prompt.

Kinds (``make_retriever(kind, pool, ...)``):

* ``random``: ``k`` distinct indices drawn with a generator seeded from
  ``sha256(seed, query)``; the same query always gets the same demos, whatever the call order
  or batching.
* ``bm25``: BM25 (``rank_bm25.BM25Okapi``, default k1=1.5/b=0.75/epsilon=0.25: the same formula and
  IDF floor as the gensim 3.x ``BM25`` the released code uses) over the *last* ``bm25_window``
  tokens of every pool prompt; the query is cut to its last ``bm25_window`` tokens as well (an
  autoregressive model is most influenced by the end of its context). Ties are broken by pool index
  (lower index counts as more similar).
* ``bm25_sbert``: the BM25 tail retriever proposes ``bm25_top`` candidates, an SBERT encoder
  re-ranks them by cosine similarity between the query and the candidate prompts; ties keep the BM25
  order.

What is indexed: the prompt's dialogue (without its final ``Assistant:``, stripped), as released; BM25 sees
it as subword tokens of the *base model's tokenizer* (the release uses LLaMA-7B's for every base model: the
same for LLaMA bases, see docs/fidelity.md), case-sensitive
(``tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))``); SBERT encodes the
same dialogue text, truncated at the encoder tokenizer's own limit (512 for all-mpnet-base-v2, as the
released ``AutoTokenizer(..., truncation=True)`` does).

``exclude`` (a prompt text or a demo id) drops every pool item whose prompt or id equals it, so a
pool that contains the test prompt itself does not leak it as a demo.

The BM25 index is built once per (pool prompts, window) and memoised in-process. SBERT embeds only the pool prompts
that BM25 proposes (as the released code does), each once: they are kept in a sqlite store under
``cache_dir()/retrieval/`` keyed by the encoder (its name, its weights' identity when it is a twin, its length limit)
and the text, so a rerun, another pool that shares prompts, or another data-parallel rank (sqlite's file locking)
encodes nothing twice. The SBERT model is only loaded by
``bm25_sbert``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import sparse

from icdpo_eval.config import names, settings
from icdpo_eval.errors import OptionError
from icdpo_eval.runtime import SqliteStore, atomic_write, hub_model_available, locked

log = logging.getLogger(__name__)

KINDS = ("random", "bm25", "bm25_sbert")
PAPER_SBERT = "sentence-transformers/all-mpnet-base-v2"

_QUERY_CHUNK = 256  # queries scored at once in retrieve_many (bounds the dense score matrix)


class Retriever(Protocol):
    def retrieve(self, query: str, k: int, *, exclude: str | None = None) -> list[int]:
        """``k`` pool indices for ``query``, least similar first, most similar last."""
        ...

    def retrieve_many(
        self, queries: Sequence[str], k: int, *, exclude: Sequence[str | None] | None = None
    ) -> list[list[int]]:
        """Batched :meth:`retrieve`; ``exclude`` is one entry per query (or ``None``)."""
        ...


def retrieval_text(prompt: str) -> str:
    """What the retrievers index of a prompt: its dialogue, stripped (see the module docstring)."""
    from icdpo_eval.method.prompts import dialogue

    return dialogue(prompt).strip()


class SubwordTails:
    """The last ``window`` subword tokens of texts under a Hugging Face tokenizer, case-sensitive (the
    released BM25 input)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)

    def __call__(self, texts: Sequence[str], window: int) -> list[list[str]]:
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [self.tokenizer.convert_ids_to_tokens(row)[-window:] for row in ids]


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode("utf-8")).hexdigest()


def _check_pool(pool: Sequence[dict]) -> list[str]:
    if len(pool) == 0:
        raise OptionError("demo pool is empty: a retriever needs at least one demo")
    prompts = []
    for i, item in enumerate(pool):
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            raise ValueError(f"demo pool item {i} has no string 'prompt' field")
        prompts.append(item["prompt"])
    return prompts


class _Base:
    """Shared bookkeeping: k checks and the exclude mask."""

    def __init__(self, pool: Sequence[dict]) -> None:
        self.prompts = _check_pool(pool)
        self.n = len(self.prompts)
        self._by_key: dict[str, list[int]] = {}
        for i, item in enumerate(pool):
            self._by_key.setdefault(item["prompt"], []).append(i)
            if item.get("id") is not None and str(item["id"]) != item["prompt"]:
                self._by_key.setdefault(str(item["id"]), []).append(i)

    def _excluded(self, exclude: str | None) -> list[int]:
        return self._by_key.get(exclude, []) if exclude is not None else []

    def _check_k(self, k: int, n_excluded: int = 0) -> None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if k > self.n:
            raise OptionError(f"k={k} demos requested but the demo pool holds only {self.n}")
        if k > self.n - n_excluded:
            raise OptionError(
                f"k={k} demos requested but only {self.n - n_excluded} of {self.n} pool items "
                "remain after excluding the query"
            )

    def retrieve(self, query: str, k: int, *, exclude: str | None = None) -> list[int]:
        return self.retrieve_many([query], k, exclude=[exclude])[0]

    def retrieve_many(
        self, queries: Sequence[str], k: int, *, exclude: Sequence[str | None] | None = None
    ) -> list[list[int]]:
        raise NotImplementedError

    def _checked_excludes(self, queries: Sequence[str], k: int, exclude) -> list:
        """Per-query exclusions, after checking that k demos remain for each query."""
        excludes = self._excludes(queries, exclude)
        for exc in excludes:
            self._check_k(k, len(self._excluded(exc)))
        return excludes

    @staticmethod
    def _excludes(queries: Sequence[str], exclude: Sequence[str | None] | None) -> list[str | None]:
        if exclude is None:
            return [None] * len(queries)
        if len(exclude) != len(queries):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
        return list(exclude)


class RandomRetriever(_Base):
    """``k`` distinct random demos, deterministic per (seed, query, exclude)."""

    def __init__(self, pool: Sequence[dict], *, seed: int = 1234) -> None:
        super().__init__(pool)
        self.seed = seed

    def retrieve_many(
        self, queries: Sequence[str], k: int, *, exclude: Sequence[str | None] | None = None
    ) -> list[list[int]]:
        out = []
        for query, exc in zip(queries, self._excludes(queries, exclude), strict=True):
            banned = self._excluded(exc)
            self._check_k(k, len(banned))
            eligible = np.setdiff1d(np.arange(self.n), np.asarray(banned, dtype=np.int64))
            digest = hashlib.sha256(f"{self.seed}\0{query}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:16], "little"))
            out.append([int(i) for i in rng.choice(eligible, size=k, replace=False)])
        return out


class _Bm25Index:
    """BM25Okapi over pool tails, with the per-(doc, term) weights precomputed as a sparse matrix.

    ``scores = W @ query_term_counts`` equals ``BM25Okapi.get_scores(query_tokens)`` exactly
    (unknown query terms score 0), but costs one sparse mat-vec instead of a Python loop over
    the pool for every query token, and batches over queries.
    """

    def __init__(self, prompts: Sequence[str], window: int, tails: SubwordTails) -> None:
        from rank_bm25 import BM25Okapi

        self.window = window
        self.tails = tails
        # an empty tail would make avgdl 0 in BM25Okapi; a sentinel token keeps it well defined
        corpus = [t or ["\x00"] for t in _pool_tails(prompts, window, tails)]
        self.bm25 = BM25Okapi(corpus)
        self.vocab = {t: j for j, t in enumerate(self.bm25.idf)}
        k1, b, avgdl = self.bm25.k1, self.bm25.b, self.bm25.avgdl
        rows, cols, vals = [], [], []
        for d, (freqs, dl) in enumerate(zip(self.bm25.doc_freqs, self.bm25.doc_len, strict=True)):
            norm = k1 * (1 - b + b * dl / avgdl)
            for t, tf in freqs.items():
                rows.append(d)
                cols.append(self.vocab[t])
                vals.append(self.bm25.idf[t] * tf * (k1 + 1) / (tf + norm))
        self.weights = sparse.csr_matrix(
            (vals, (rows, cols)), shape=(len(corpus), len(self.vocab)), dtype=np.float64
        )

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(len(queries), pool size) BM25 scores of the queries' tails."""
        rows, cols = [], []
        for i, toks in enumerate(self.tails(queries, self.window)):
            for t in toks:
                j = self.vocab.get(t)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        q = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(queries), len(self.vocab)), dtype=np.float64
        )  # duplicates are summed: query term counts, as get_scores iterates over repeated tokens
        return np.asarray((q @ self.weights.T).todense())


def _pool_tails(prompts: Sequence[str], window: int, tails: Any) -> list[list[str]]:
    """The pool's BM25 tails, computed once per (pool, window, tokenizer) and shared through the disk cache
    (``cache_dir()/retrieval/``): under data parallel one process tokenizes, the others wait and read."""
    key = _sha256([_sha256(list(prompts)), window, tails.name])
    path = settings.cache_dir() / "retrieval" / f"bm25-tails-{key}.json"
    with locked(path):
        if path.exists():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(cached, list) and len(cached) == len(prompts):
                    return cached
            except (OSError, ValueError) as err:
                log.warning("retrieval: ignoring unreadable BM25 cache %s (%s)", path, err)
        out = tails(prompts, window)
        atomic_write(path, lambda fh: json.dump(out, fh, ensure_ascii=False))
        return out


_BM25_MEMO: dict[tuple[str, int, str], _Bm25Index] = {}
_SBERT_MODELS: dict[tuple[str, str | None], Any] = {}  # (resolved folder or hub name, device)


def _bm25_index(prompts: Sequence[str], window: int, tails: SubwordTails) -> _Bm25Index:
    key = (_sha256(list(prompts)), window, tails.name)
    if key not in _BM25_MEMO:
        t0 = time.perf_counter()
        _BM25_MEMO[key] = _Bm25Index(prompts, window, tails)
        log.info(
            "retrieval: BM25 index over %d prompts (tail window %d) built in %.2fs",
            len(prompts),
            window,
            time.perf_counter() - t0,
        )
        while len(_BM25_MEMO) > 8:
            _BM25_MEMO.pop(next(iter(_BM25_MEMO)))
    return _BM25_MEMO[key]


def _top(scores: np.ndarray, banned: Sequence[int], k: int) -> list[int]:
    """Indices of the ``k`` best scores, best first, ties by index; ``banned`` never chosen."""
    scores = scores.astype(np.float64, copy=True)
    scores[list(banned)] = -np.inf
    if k == 0:
        return []
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    cand = np.flatnonzero(scores >= kth)
    cand = cand[np.isin(cand, banned, invert=True)]
    order = np.lexsort((cand, -scores[cand]))
    return [int(i) for i in cand[order][:k]]


class BM25Retriever(_Base):
    """BM25 over the last ``window`` subword tokens (of ``tokenizer``, the base model's) of each pool dialogue and
    of the query's (module docstring)."""

    def __init__(self, pool: Sequence[dict], *, tokenizer: Any, window: int = 30) -> None:
        super().__init__(pool)
        if window <= 0:
            raise ValueError(f"bm25_window must be > 0, got {window}")
        self.window = window
        self.texts = [retrieval_text(p) for p in self.prompts]
        self.tails = SubwordTails(tokenizer)
        self.index = _bm25_index(self.texts, window, self.tails)

    def bm25_scores(self, queries: Sequence[str]) -> np.ndarray:
        return self.index.scores([retrieval_text(q) for q in queries])

    def _ranked(self, queries: Sequence[str], k: int, excludes: list[str | None]) -> list[list[int]]:
        """Best-first top ``k`` per query."""
        out: list[list[int]] = []
        for start in range(0, len(queries), _QUERY_CHUNK):
            chunk = queries[start : start + _QUERY_CHUNK]
            scores = self.bm25_scores(chunk)
            for row, exc in zip(scores, excludes[start : start + _QUERY_CHUNK], strict=True):
                banned = self._excluded(exc)
                out.append(_top(row, banned, min(k, self.n - len(banned))))
        return out

    def retrieve_many(
        self, queries: Sequence[str], k: int, *, exclude: Sequence[str | None] | None = None
    ) -> list[list[int]]:
        excludes = self._checked_excludes(queries, k, exclude)
        return [best[::-1] for best in self._ranked(queries, k, excludes)]


_SBERT_AUTO: dict[str, str] = {}


def resolve_sbert(name: str | None) -> str:
    """``"auto"`` -> the paper's all-mpnet-base-v2 when it is in the local HF cache or the hub answers,
    else the embedded all-MiniLM-L6-v2 (with a warning, once); other names unchanged."""
    name = names.canonical((name or "auto").strip()) or "auto"
    if name != "auto":
        return name
    if "auto" not in _SBERT_AUTO:
        if hub_model_available(PAPER_SBERT):
            _SBERT_AUTO["auto"] = PAPER_SBERT
        else:
            _SBERT_AUTO["auto"] = names.SBERT
            log.warning("retrieval: the paper's SBERT %s is neither cached nor reachable: re-ranking with the "
                        "embedded %s instead (recorded as the run's `sbert`); pass sbert=<name> to choose",
                        PAPER_SBERT, names.SBERT)
    return _SBERT_AUTO["auto"]


def _load_sbert(name: str, device: str | None) -> Any:
    key = (names.resolve(name, names.SBERT), device)  # the folder: ICDPO_EMBEDDED_DIR's twin is another model
    if key not in _SBERT_MODELS:
        from sentence_transformers import SentenceTransformer

        t0 = time.perf_counter()
        model = SentenceTransformer(names.resolve(name, names.SBERT), device=device)
        # the released encoder: AutoTokenizer(..., truncation=True) -> the tokenizer's own limit
        limit = getattr(model.tokenizer, "model_max_length", None)
        positions = getattr(getattr(model[0], "auto_model", None), "config", None)
        positions = getattr(positions, "max_position_embeddings", None)
        if isinstance(limit, int) and limit < 100_000:
            model.max_seq_length = min(limit, positions - 2) if positions else limit
        _SBERT_MODELS[key] = model
        log.info("retrieval: loaded SBERT %s in %.2fs", name, time.perf_counter() - t0)
    return _SBERT_MODELS[key]


def _encode(model: Any, texts: Sequence[str]) -> np.ndarray:
    """Unit-norm float32 embeddings (cosine similarity = dot product)."""
    emb = model.encode(
        list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(emb, dtype=np.float32)


def _encoder_key(encoder: str, max_len: int | None) -> str:
    """What an embedding depends on besides its text: the encoder's name, its weights when the embedded name stands
    for a twin under ``ICDPO_EMBEDDED_DIR``, and its length limit."""
    if names.is_embedded(encoder):
        from icdpo_eval.data.embedded import identity

        twin = identity("sbert")
        encoder = encoder if twin is None else f"{encoder}|{twin}"
    return f"{encoder}|{max_len}"


class EmbeddingStore(SqliteStore):
    """SBERT embeddings on disk, one row per (encoder key, text) digest: float32 bytes."""

    _CHUNK = 500  # keys per SELECT (sqlite's bound-parameter limit)

    def __init__(self, path: Path | None = None) -> None:
        path = path or settings.cache_dir() / "retrieval" / "sbert.sqlite"
        super().__init__(path, "CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    @staticmethod
    def key(encoder_key: str, text: str) -> str:
        return hashlib.sha256(f"{encoder_key}\0{text}".encode()).hexdigest()

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), self._CHUNK):
            chunk = list(keys[start : start + self._CHUNK])
            marks = ",".join("?" * len(chunk))
            for key, vec in self.query(f"SELECT key, vec FROM emb WHERE key IN ({marks})", tuple(chunk)):
                found[key] = np.frombuffer(vec, dtype=np.float32)
        return found

    def put(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        for key, vec in items:
            self.query("INSERT OR IGNORE INTO emb (key, vec) VALUES (?, ?)",
                       (key, np.ascontiguousarray(vec, dtype=np.float32).tobytes()))


class BM25SbertRetriever(BM25Retriever):
    """BM25 tail proposes ``top`` candidates, SBERT cosine similarity re-ranks them."""

    def __init__(
        self,
        pool: Sequence[dict],
        *,
        window: int = 30,
        top: int = 20,
        encoder: str = names.SBERT,
        device: str | None = None,
        tokenizer: Any,
    ) -> None:
        super().__init__(pool, window=window, tokenizer=tokenizer)
        if top <= 0:
            raise ValueError(f"bm25_top must be > 0, got {top}")
        self.top, self.encoder, self.device = top, resolve_sbert(encoder), device
        self._emb: dict[int, np.ndarray] = {}  # pool index -> unit-norm embedding, this retriever's memo
        self._store: EmbeddingStore | None = None
        self.encoded = 0  # pool prompts this retriever encoded (not found in memory or on disk)

    @property
    def model(self) -> Any:
        return _load_sbert(self.encoder, self.device)

    def embeddings(self, indices: Sequence[int]) -> np.ndarray:
        """Unit-norm SBERT embeddings of the pool prompts at ``indices`` (rows in that order): from this retriever's
        memo, the disk store, or encoded in one batch (only those found in neither)."""
        missing = sorted({int(i) for i in indices} - self._emb.keys())
        if missing:
            if self._store is None:
                self._store = EmbeddingStore()
            enc = _encoder_key(self.encoder, self.model.max_seq_length)
            keys = {i: EmbeddingStore.key(enc, self.texts[i]) for i in missing}
            found = self._store.get(list(keys.values()))
            todo = [i for i in missing if keys[i] not in found]
            self._emb.update((i, found[keys[i]]) for i in missing if keys[i] in found)
            if todo:
                t0 = time.perf_counter()
                vecs = _encode(self.model, [self.texts[i] for i in todo])
                self._store.put([(keys[i], v) for i, v in zip(todo, vecs, strict=True)])
                self._emb.update(zip(todo, vecs, strict=True))
                self.encoded += len(todo)
                log.info("retrieval: SBERT (%s) encoded %d pool prompts in %.2fs", self.encoder, len(todo),
                         time.perf_counter() - t0)
        if not len(indices):
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._emb[int(i)] for i in indices])

    def retrieve_many(
        self, queries: Sequence[str], k: int, *, exclude: Sequence[str | None] | None = None
    ) -> list[list[int]]:
        excludes = self._checked_excludes(queries, k, exclude)
        if k == 0 or not queries:
            return [[] for _ in queries]
        candidates = self._ranked(queries, max(self.top, k), excludes)
        self.embeddings(sorted({i for cand in candidates for i in cand}))  # every candidate of the batch at once
        q_emb = _encode(self.model, [retrieval_text(q) for q in queries])
        out = []
        for cand, q in zip(candidates, q_emb, strict=True):
            sims = self.embeddings(cand) @ q
            order = np.argsort(-sims, kind="stable")  # ties keep the BM25 order
            out.append([int(cand[i]) for i in order[:k]][::-1])
        return out


def make_retriever(
    kind: str,
    pool: Sequence[dict],
    *,
    seed: int = 1234,
    bm25_window: int = 30,
    bm25_top: int = 20,
    sbert: str = names.SBERT,
    device: str | None = None,
    tokenizer: Any = None,
) -> Retriever:
    """Build a retriever of ``kind`` (one of :data:`KINDS`) over ``pool``; ``tokenizer`` (the base model's, needed
    by the BM25 kinds) gives BM25's subword tokens (module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown retriever kind {kind!r}; expected one of {', '.join(KINDS)}")
    t0 = time.perf_counter()
    retriever: Retriever
    if kind == "random":
        retriever = RandomRetriever(pool, seed=seed)
    elif kind == "bm25":
        retriever = BM25Retriever(pool, window=bm25_window, tokenizer=tokenizer)
    else:
        retriever = BM25SbertRetriever(pool, window=bm25_window, top=bm25_top, encoder=sbert, device=device,
                                       tokenizer=tokenizer)
    elapsed = time.perf_counter() - t0
    log.info("retrieval: %s retriever over %d demos ready in %.2fs", kind, len(pool), elapsed)
    return retriever
