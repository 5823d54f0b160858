"""Shared plumbing of the baseline lm-eval wrappers: :class:`BaselineLM` is the same
:class:`icdpo_eval.models.base.MethodLM` every method uses (argument checks, request batching,
loglikelihood = scorer); plus base-model loading.
"""

from __future__ import annotations

from typing import Any

from icdpo_eval.data import embedded
from icdpo_eval.engine import Engine
from icdpo_eval.models.base import (  # noqa: F401  (re-exported for the baselines)
    DemoRetrieval,
    as_batch_size,
    as_bool,
    as_float,
    as_int,
    check_unknown,
    choice,
)
from icdpo_eval.models.base import MethodLM as BaselineLM  # noqa: F401


def load_base(pretrained: str | None, *, device: str | None, dtype: str, max_rows: int = 24,
              max_length: Any = None, revision: str | None = None, trust_remote_code: Any = False,
              adapter: str | None = None) -> Engine:
    """The base model's engine (``embedded:*`` aliases resolved; ``adapter`` = a peft LoRA folder)."""
    return Engine.load(embedded.resolve(pretrained, embedded.BASE_ALIAS), device=device, dtype=dtype,
                       revision=revision, trust_remote_code=as_bool("trust_remote_code", trust_remote_code),
                       adapter=adapter, max_rows=max_rows,
                       max_length=None if max_length is None else as_int("max_length", max_length, 16))
