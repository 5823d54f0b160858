"""icdpo-eval: ICDPO and its baselines as lm-evaluation-harness models, tasks and metrics.

Importing this package is cheap (no torch, no lm_eval); heavy modules load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def evaluate(model: Any = "icdpo", tasks: str | list[str] = "hh_harmless_mini",
             model_args: str | dict[str, Any] | None = None, **kwargs: Any) -> dict:
    """:func:`lm_eval.simple_evaluate` with our models registered and our task folder included, through lm-eval's
    public API (:func:`icdpo_eval.harness.evaluate`; nothing patched); the keyword arguments are
    ``simple_evaluate``'s (and ``include_path``).

    >>> results = evaluate("icdpo", "hh_harmless_mini", "scorer=s_hat", limit=2,   # doctest: +SKIP
    ...                    metadata={"rm": "proxy"})
    >>> results["results"]["hh_harmless_mini"]["rm_reward,none"]                  # doctest: +SKIP
    """
    from icdpo_eval import harness

    return harness.evaluate(model, tasks, model_args, **kwargs)
