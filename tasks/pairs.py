"""Preference accuracy of a scorer on human-labelled pairs (the ``*_pairs`` tasks, issue 17).

RewardBench-style: does the scorer rank the human-chosen response above the rejected one? Each document
is one labelled pair of the task's evaluation rows (the same rows, length filters and loader as the
generation task of the same name, :func:`icdpo_eval.tasks.utils.load`); lm-eval asks the model for
``loglikelihood(prompt, " " + response)`` of both responses, and every model of ours answers with its
scorer's value (S / Ŝ / ICL, the teacher's log-prob, a reward model's reward, DPO's implicit reward);
stock ``--model hf`` answers with the plain log-likelihood (a length-biased reference, not a floor).

The task YAMLs (``_pairs_template.yaml``) use::

    output_type: multiple_choice
    doc_to_choice: !function icdpo_eval.tasks.pairs.doc_to_choice
    doc_to_target: 0
    process_results: !function icdpo_eval.tasks.pairs.process_results

Per document :func:`process_results` returns

* ``acc``: 1 if score(chosen) > score(rejected), 0.5 on a tie (``|difference| <= TIE``), else 0;
* ``tie_rate``: 1 on a tie, else 0;
* ``margin``: score(chosen) - score(rejected) (on the scorer's own scale; lm-eval reports its stderr);
* ``len_diff``: token length of chosen - rejected in the one fixed tokenizer
  (:func:`icdpo_eval.tasks.metrics.response_length`): how much length alone could explain.

All four aggregate by ``mean``. The demos of an in-context scorer come from the base task's pool
(:func:`icdpo_eval.method.demos.base_task` maps ``_pairs``), and the loglikelihood path retrieves them
with ``exclude_self=True``: a pool row whose prompt is the pair's own is never its demo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

TIE = 1e-9  # score differences at most this far apart count as a tie


def _score(result: Any) -> float:
    """lm-eval hands a loglikelihood result as ``(value, is_greedy)``; a bare number is accepted too."""
    return float(result[0]) if isinstance(result, (tuple, list)) else float(result)


def compare(score_chosen: float, score_rejected: float) -> dict[str, float]:
    """``acc`` / ``tie_rate`` / ``margin`` of one pair from its two scores. A pair in which both scores
    are ``-inf`` (or otherwise equal) is a tie; one ``-inf`` loses."""
    if score_chosen == score_rejected:  # also both -inf / both +inf, where the difference is nan
        margin = 0.0
    else:
        margin = score_chosen - score_rejected
    if math.isnan(margin):
        raise ValueError(f"pair scores {score_chosen!r} and {score_rejected!r}: the difference is not a number")
    tie = abs(margin) <= TIE
    return {"acc": 0.5 if tie else float(margin > 0), "tie_rate": float(tie), "margin": margin}


def doc_to_choice(doc: dict[str, Any]) -> list[str]:
    """The two choices, in the order the metrics read them: [chosen, rejected] (the target is 0)."""
    return [doc["chosen"], doc["rejected"]]


def process_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, float]:
    """Per-document metrics of a pair; ``results`` = the scores of [chosen, rejected] (choice order)."""
    from icdpo_eval.tasks.metrics import response_length

    if len(results) != 2:
        raise ValueError(f"a pairs task scores 2 choices (chosen, rejected), got {len(results)} results")
    out: dict[str, float] = compare(_score(results[0]), _score(results[1]))
    out["len_diff"] = float(response_length(str(doc["chosen"]).strip())
                            - response_length(str(doc["rejected"]).strip()))
    return out
