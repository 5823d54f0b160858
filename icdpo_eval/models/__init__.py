"""The lm-eval face: :class:`~.base.MethodLM` (request batching, model_args in :mod:`.args`), ``--model icdpo``
and ``--model rm``. Builds on ``method/`` and ``engine/``; the baselines (``icdpo_eval.baselines``) subclass it."""
