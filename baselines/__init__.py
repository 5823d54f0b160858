"""The paper's baselines as lm-eval models (``rm_bon``, ``rm_aug``, ``sft_lora``, ``dpo``) and LoRA
training (:mod:`.train`).
Each is a :class:`icdpo_eval.models.base.MethodLM`: a generator and a scorer from ``method/`` over the engine."""
