"""The hot path: prefix-cached sampling and log-probs on one causal LM (:mod:`.engine`), and the sampling
policy it draws with (:mod:`.sampling`). Imports nothing from the rest of icdpo_eval."""

from icdpo_eval.engine.engine import Engine, Sample, Session, resolve_device, resolve_dtype
from icdpo_eval.engine.sampling import SamplingParams, row_generator, stable_seed, top_p_choice

__all__ = ["Engine", "Sample", "SamplingParams", "Session", "resolve_device", "resolve_dtype", "row_generator",
           "stable_seed", "top_p_choice"]
