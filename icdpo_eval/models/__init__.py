"""The lm-eval face: :class:`~.base.MethodLM` (options from :mod:`icdpo_eval.config.options`, request batching, the
length check), ``--model icdpo`` and ``--model rm``, the result journal and data parallel. Builds on ``method/``,
``engine/``, ``judges/``; the baselines (``icdpo_eval.baselines``) subclass it."""
