"""The hot path: prefix-cached sampling and log-probs on one causal LM (:mod:`.engine`), and the sampling
policy it draws with (:mod:`.sampling`). Imports nothing of icdpo_eval but :mod:`icdpo_eval.runtime` (device
and dtype resolution)."""

from icdpo_eval.engine.engine import WEIGHTS, Engine, Sample, Session, weights_key
from icdpo_eval.engine.sampling import SamplingParams, row_generator, stable_seed, top_p_choice

__all__ = ["WEIGHTS", "Engine", "Sample", "SamplingParams", "Session", "row_generator", "stable_seed", "top_p_choice",
           "weights_key"]
