"""lm-eval task YAMLs and their functions (one loader, metrics, win rate, ranking), imported as
``icdpo_eval.tasks.*``. May import ``judges/`` and ``data/`` only."""
