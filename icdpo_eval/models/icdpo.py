"""``lm_eval --model icdpo``: ICDPO and its ICL-only ablations as an lm-eval model.

generate_until: retrieve K demos for the request's dialogue, sample N candidates from the base model
under the positive in-context prompt, cut them at turn markers, score them with S / Ŝ / ICL, return
the best (or, for the ablations, a random one / the single sample).
loglikelihood: the configured scorer's value of (context, continuation), so any multiple-choice task
ranks its choices by S / Ŝ / ICL.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from lm_eval.api.model import LM
from tqdm import tqdm

from icdpo_eval import embedded
from icdpo_eval.best_of_n import SELECTS, sample_and_select
from icdpo_eval.demos import DemoStore
from icdpo_eval.engine import Engine
from icdpo_eval.prompts import TURN_MARKERS
from icdpo_eval.retrieval import make_retriever
from icdpo_eval.scorers import SCORERS, Candidate, ContrastiveScorer, positive_context

log = logging.getLogger(__name__)

RETRIEVERS = ("random", "bm25", "bm25_sbert")


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    value = str(value)
    if value not in allowed:
        raise ValueError(f"model_arg {name}={value!r} is not one of: {', '.join(allowed)}")
    return value


def as_int(name: str, value: Any, minimum: int = 0) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"model_arg {name}={value!r} must be an integer") from None
    if out < minimum:
        raise ValueError(f"model_arg {name}={value!r} must be >= {minimum}")
    return out


def as_float(name: str, value: Any, lo: float, hi: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"model_arg {name}={value!r} must be a number") from None
    if not lo <= out <= hi:
        raise ValueError(f"model_arg {name}={value!r} must be in [{lo}, {hi}]")
    return out


# keys lm-eval's CLI may inject; accepted and ignored when they carry no meaning for us
_IGNORED = {"max_batch_size", "trust_remote_code_warning"}


class ICDPOLM(LM):
    """ICDPO over one base model. See the README's options table for every model_arg."""

    method = "icdpo"

    def __init__(
        self,
        pretrained: str | None = None,
        scorer: str = "s",
        select: str = "score",
        retriever: str = "random",
        sbert: str = embedded.SBERT_ALIAS,
        n: int | str = 3,
        k: int | str = 2,
        top_p: float | str | None = None,
        temperature: float | str | None = None,
        max_new_tokens: int | str | None = None,
        bm25_window: int | str = 30,
        bm25_top: int | str = 20,
        demo_pool: str | None = None,
        demo_source: str = "raw",
        seed: int | str = 1234,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int | str = 1,
        max_length: int | str | None = None,
        revision: str | None = None,
        trust_remote_code: bool | str = False,
        **unknown: Any,
    ) -> None:
        super().__init__()
        bad = sorted(set(unknown) - _IGNORED)
        if bad:
            raise ValueError(f"unknown model_arg(s) for --model {self.method}: {', '.join(bad)}; "
                             "see the README's options table")
        self.scorer_kind = choice("scorer", scorer, SCORERS)
        self.select = choice("select", select, SELECTS)
        self.retriever_kind = choice("retriever", retriever, RETRIEVERS)
        self.n = 1 if self.select == "single" else as_int("n", n, 1)
        self.k = as_int("k", k, 0)
        self.top_p = None if top_p is None else as_float("top_p", top_p, 0.0, 1.0)
        self.temperature = None if temperature is None else as_float("temperature", temperature, 0.0, 100.0)
        self.max_new_tokens = None if max_new_tokens is None else as_int("max_new_tokens", max_new_tokens, 1)
        self.bm25_window = as_int("bm25_window", bm25_window, 1)
        self.bm25_top = as_int("bm25_top", bm25_top, 1)
        self.seed = as_int("seed", seed)
        bs = str(batch_size)
        self.batch_size = 1 if bs.startswith("auto") else as_int("batch_size", bs, 1)
        self.sbert = sbert
        self.pretrained = pretrained or embedded.BASE_ALIAS
        trust = str(trust_remote_code).lower() in ("1", "true", "yes")
        self.engine = Engine.load(
            embedded.resolve(self.pretrained, embedded.BASE_ALIAS), device=device, dtype=dtype,
            revision=revision, trust_remote_code=trust,
            max_length=None if max_length is None else as_int("max_length", max_length, 16),
            max_rows=max(24, self.n * self.batch_size),
        )
        self.scorer = ContrastiveScorer(self.engine, self.scorer_kind)
        self.demos = DemoStore(demo_pool=demo_pool, demo_source=demo_source)
        self._retrievers: dict[str, Any] = {}
        self.stats: dict[str, int] = defaultdict(int)

    # ------------------------------------------------------------------ lm-eval plumbing
    @property
    def tokenizer_name(self) -> str:
        return str(self.pretrained).replace("/", "__")

    def get_model_info(self) -> dict:
        return {
            "method": self.method,
            "pretrained": self.pretrained,
            "scorer": self.scorer_kind,
            "select": self.select,
            "retriever": self.retriever_kind,
            "sbert": self.sbert if self.retriever_kind == "bm25_sbert" else None,
            "n": self.n,
            "k": self.k,
            "demo_pool": self.demos.demo_pool or "task default",
            "demo_source": self.demos.demo_source,
            "seed": self.seed,
            "dtype": str(self.engine.model.dtype),
        }

    def _retrieve(self, task: str | None, queries: list[str]) -> list[list[dict]]:
        if self.k == 0:
            return [[] for _ in queries]
        pool = self.demos.pool(task)
        key = self.demos.key(task)
        if key not in self._retrievers:
            self._retrievers[key] = make_retriever(
                self.retriever_kind, pool, seed=self.seed, bm25_window=self.bm25_window,
                bm25_top=self.bm25_top, sbert=self.sbert, device=str(self.engine.device))
        idx = self._retrievers[key].retrieve_many(queries, self.k)
        return [[pool[i] for i in ids] for ids in idx]

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = [""] * len(requests)
        by_task: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            by_task[(task_of(req), _freeze(dict(req.args[1] or {})))].append(i)
        bar = tqdm(total=len(requests), desc=f"icdpo[{self.scorer_kind}] generate", disable=disable_tqdm)
        for (task, frozen), idxs in by_task.items():
            gk = dict(frozen)
            for s in range(0, len(idxs), self.batch_size):
                chunk = idxs[s:s + self.batch_size]
                answers = self._generate_batch(task, [requests[i] for i in chunk], gk)
                for i, a in zip(chunk, answers):
                    out[i] = a
                bar.update(len(chunk))
        bar.close()
        if self.stats["empty"]:
            log.warning("icdpo: %d of %d documents had only empty candidates (returned '')",
                        self.stats["empty"], len(requests))
        return out

    def _gen_settings(self, gk: dict) -> tuple[int, float, float, bool, list[str]]:
        until = gk.get("until") or []
        if isinstance(until, str):
            until = [until]
        max_new = self.max_new_tokens or int(gk.get("max_gen_toks", 128))
        top_p = self.top_p if self.top_p is not None else float(gk.get("top_p", 0.8))
        temp = self.temperature if self.temperature is not None else float(gk.get("temperature", 1.0))
        do_sample = bool(gk.get("do_sample", True)) and temp > 0
        return max_new, top_p, temp, do_sample, [*TURN_MARKERS, *until]

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list[str]:
        max_new, top_p, temp, do_sample, stops = self._gen_settings(gk)
        prompts = [r.args[0] for r in reqs]
        demos = self._retrieve(task, prompts)
        choices = sample_and_select(
            self.engine, self.scorer, prompts, [positive_context(p, d) for p, d in zip(prompts, demos)], demos,
            n=self.n, select=self.select, seed=self.seed, max_new_tokens=max_new, top_p=top_p,
            temperature=temp, do_sample=do_sample, stops=stops, names=[f"{task} doc {r.doc_id}" for r in reqs])
        self.stats["empty"] += sum(c.index is None for c in choices)
        return [c.text for c in choices]

    # ------------------------------------------------------------------ scoring
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        groups_idx: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups_idx[(task_of(req), req.args[0])].append(i)
        keys = list(groups_idx)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        bar = tqdm(total=len(requests), desc=f"icdpo[{self.scorer_kind}] score", disable=disable_tqdm)
        step = max(1, self.batch_size)
        for s in range(0, len(keys), step):
            chunk = keys[s:s + step]
            by_task: dict[str | None, list[tuple]] = defaultdict(list)
            for key in chunk:
                by_task[key[0]].append(key)
            for task, tkeys in by_task.items():
                demos = self._retrieve(task, [ctx for _, ctx in tkeys])
                groups = [[Candidate(ctx, requests[i].args[1], d) for i in groups_idx[key]]
                          for key, (_, ctx), d in zip(tkeys, tkeys, demos)]
                for key, sc in zip(tkeys, self.scorer.score(groups)):
                    for i, v in zip(groups_idx[key], sc):
                        out[i] = (v, False)
                    bar.update(len(sc))
        bar.close()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "--model icdpo scores responses given a prompt; perplexity tasks (loglikelihood_rolling) "
            "are not meaningful for it. Use --model hf for those.")


def task_of(req) -> str | None:
    """The task whose demo pool serves this request: a rank-set row names its ``source_task``."""
    doc = getattr(req, "doc", None)
    source = doc.get("source_task") if isinstance(doc, dict) else None
    return source or req.task_name


def _freeze(d: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))
