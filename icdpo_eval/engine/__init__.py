"""Prefix-cached sampling and scoring engine (the hot path lives in :mod:`.engine`)."""

from icdpo_eval.engine.engine import (
    Engine,
    Sample,
    SamplingParams,
    Session,
    resolve_device,
    resolve_dtype,
    row_generator,
    stable_seed,
    top_p_choice,
)

__all__ = ["Engine", "Sample", "SamplingParams", "Session", "resolve_device", "resolve_dtype", "row_generator",
           "stable_seed", "top_p_choice"]
