"""Prefix-cached sampling and scoring engine (the hot path lives in :mod:`.engine`)."""

from icdpo_eval.engine.engine import Engine, Sample, resolve_device, resolve_dtype, stable_seed, top_p_choice

__all__ = ["Engine", "Sample", "resolve_device", "resolve_dtype", "stable_seed", "top_p_choice"]
