"""Shared plumbing of the baseline lm-eval wrappers: argument checks, base-model loading, request batching.

A baseline subclasses :class:`BaselineLM`, sets ``self.engine`` / ``self.scorer`` / the generation
attributes in ``__init__`` (after ``super().__init__()``) and implements ``_generate_batch``; lm-eval's
``generate_until`` requests are grouped by (task, generation kwargs) and handed over ``batch_size`` at a
time, and ``loglikelihood`` returns ``self.scorer``'s value of each (context, continuation).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lm_eval.api.model import LM
from tqdm import tqdm

from icdpo_eval import embedded
from icdpo_eval.engine import Engine
from icdpo_eval.models.icdpo import _IGNORED, _freeze, as_float, as_int, choice  # noqa: F401 (re-exported)
from icdpo_eval.prompts import TURN_MARKERS
from icdpo_eval.scorers import Candidate


def check_unknown(method: str, unknown: dict[str, Any]) -> None:
    bad = sorted(set(unknown) - _IGNORED)
    if bad:
        raise ValueError(f"unknown model_arg(s) for --model {method}: {', '.join(bad)}; see docs/baselines_rm.md")


def as_bool(name: str, value: Any) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"model_arg {name}={value!r} must be true or false")


def as_batch_size(value: Any) -> int:
    bs = str(value)
    return 1 if bs.startswith("auto") else as_int("batch_size", bs, 1)


def load_base(pretrained: str | None, *, device: str | None, dtype: str, max_rows: int = 24,
              max_length: Any = None, revision: str | None = None, trust_remote_code: Any = False,
              adapter: str | None = None) -> Engine:
    """The base model's engine (``embedded:*`` aliases resolved; ``adapter`` = a peft LoRA folder)."""
    return Engine.load(embedded.resolve(pretrained, embedded.BASE_ALIAS), device=device, dtype=dtype,
                       revision=revision, trust_remote_code=as_bool("trust_remote_code", trust_remote_code),
                       adapter=adapter, max_rows=max_rows,
                       max_length=None if max_length is None else as_int("max_length", max_length, 16))


class BaselineLM(LM):
    """generate_until / loglikelihood plumbing; subclasses implement :meth:`_generate_batch`."""

    method = "baseline"
    pretrained: str = embedded.BASE_ALIAS
    engine: Engine
    scorer: Any
    batch_size: int = 1
    max_new_tokens: int | None = None
    top_p: float | None = None
    temperature: float | None = None

    @property
    def tokenizer_name(self) -> str:
        return str(self.pretrained).replace("/", "__")

    def _generate_batch(self, task: str | None, reqs: list, gk: dict) -> list[str]:
        raise NotImplementedError

    def gen_settings(self, gk: dict) -> tuple[int, float, float, bool, list[str]]:
        """(max_new_tokens, top_p, temperature, do_sample, stops): model_args override the task's kwargs."""
        until = gk.get("until") or []
        if isinstance(until, str):
            until = [until]
        max_new = self.max_new_tokens or int(gk.get("max_gen_toks", 128))
        top_p = self.top_p if self.top_p is not None else float(gk.get("top_p", 0.8))
        temp = self.temperature if self.temperature is not None else float(gk.get("temperature", 1.0))
        do_sample = bool(gk.get("do_sample", True)) and temp > 0
        return max_new, top_p, temp, do_sample, [*TURN_MARKERS, *until]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str] = [""] * len(requests)
        by_task: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            by_task[(req.task_name, _freeze(dict(req.args[1] or {})))].append(i)
        bar = tqdm(total=len(requests), desc=f"{self.method} generate", disable=disable_tqdm)
        for (task, frozen), idxs in by_task.items():
            for s in range(0, len(idxs), self.batch_size):
                chunk = idxs[s:s + self.batch_size]
                for i, a in zip(chunk, self._generate_batch(task, [requests[i] for i in chunk], dict(frozen))):
                    out[i] = a
                bar.update(len(chunk))
        bar.close()
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """The scorer's value of each continuation given its context (each context encoded once)."""
        groups_idx: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups_idx[req.args[0]].append(i)
        keys = list(groups_idx)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        bar = tqdm(total=len(requests), desc=f"{self.method} score", disable=disable_tqdm)
        step = max(1, self.batch_size)
        for s in range(0, len(keys), step):
            chunk = keys[s:s + step]
            groups = [[Candidate(ctx, requests[i].args[1]) for i in groups_idx[ctx]] for ctx in chunk]
            for ctx, sc in zip(chunk, self.scorer.score(groups)):
                for i, v in zip(groups_idx[ctx], sc):
                    out[i] = (v, False)
                bar.update(len(sc))
        bar.close()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(f"--model {self.method} scores responses given a prompt; perplexity tasks "
                                  "(loglikelihood_rolling) are not meaningful for it. Use --model hf for those.")
