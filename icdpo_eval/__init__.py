"""icdpo-eval: ICDPO and its baselines as lm-evaluation-harness models, tasks and metrics.

Importing this package is cheap (no torch, no lm_eval); heavy modules load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def evaluate(model: str = "icdpo", tasks: str | list[str] = "hh_harmless_mini",
             model_args: str | dict[str, Any] | None = None, **kwargs: Any) -> dict:
    """Thin layer over :func:`lm_eval.simple_evaluate` with our models and tasks registered.

    >>> results = evaluate("icdpo", "hh_harmless_mini", "scorer=s_hat", limit=2,   # doctest: +SKIP
    ...                    metadata={"rm": "proxy"})
    >>> results["results"]["hh_harmless_mini"]["rm_reward,none"]                  # doctest: +SKIP
    """
    from icdpo_eval._lm_eval_hook import install

    install()
    import lm_eval

    task_list = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    # no task_manager: simple_evaluate builds one with the task metadata (model_args + ``metadata=``), as the CLI
    return lm_eval.simple_evaluate(model=model, model_args=model_args or "", tasks=task_list, **kwargs)
