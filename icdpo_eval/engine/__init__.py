"""The hot path: prefix-cached sampling and log-probs on one causal LM (:mod:`.engine`), the sampling policy it draws
with (:mod:`.sampling`), the decode step's kernel strategy it is given (:mod:`.kernels`) and the loading of weights
and tokenizers it runs on (:mod:`.loading`). Imports nothing of icdpo_eval but :mod:`icdpo_eval.runtime` (device
and dtype resolution) and :mod:`icdpo_eval.errors`."""

from icdpo_eval.engine.engine import Choose, Engine, Prefix, Sample, Session
from icdpo_eval.engine.kernels import DecodeKernels
from icdpo_eval.engine.loading import WEIGHTS, adapter_fingerprint, load_weights, model_label, weights_key
from icdpo_eval.engine.sampling import SamplingParams, row_generator, stable_seed, top_p_choice

__all__ = ["WEIGHTS", "Choose", "DecodeKernels", "Engine", "Prefix",
           "Sample", "SamplingParams", "Session", "adapter_fingerprint", "load_weights", "model_label",
           "row_generator", "stable_seed", "top_p_choice", "weights_key"]
