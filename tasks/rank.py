"""The MRR ranking task ``hh_harmless_rank`` (the paper's metric 3).

Data: the rank set named by ``$ICDPO_RANK_SET`` (built by ``icdpo-eval build-rank-set``): each row's 3
candidates are the choices; the judge's best candidate is the target. A model's ``loglikelihood`` is its
scorer (S / Ŝ / ICL for ``icdpo``, the teacher for ``rm_bon``, the reward for ``rm``), so lm-eval ranks
the choices by it. Metrics:

* ``mrr`` = mean over the prompts whose judge best is unique of 1 / (rank of the judge's best candidate
  in the scorer's order); a candidate tied with it in the scorer's order counts as ranked above it
  (pessimistic). NaN when no row qualifies.
* ``judge_tied``: rows left out because the judge's best was tied (``best_tied``, ``judge_best_set``
  with more than one index: pairwise Copeland points or equal rewards);
* ``judge_failed``: rows left out because the judge gave no order (``judge_order`` / ``judge_best``
  null: an answer unparsable after the re-ask).

The excluded rows stay in the dataset (lm-eval still scores their candidates) so that they can be
counted; their ``judge_best`` is a placeholder 0. Older rank sets without ``judge_best_set`` load as
before (a row is tied iff its ``best_tied`` is true). lm-eval imports this module by its package name
(see :mod:`icdpo_eval.tasks.utils`); tests/test_ranking.py also loads it by path, hence absolute imports only.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

log = logging.getLogger("icdpo_eval.tasks.rank")

RANK_ENV = "ICDPO_RANK_SET"
OK, TIED, FAILED = "ok", "tied", "failed"


def _parse_row(r: dict[str, Any]) -> tuple[list[str], int, list[int], str]:
    """(candidates, judge best (0 when failed), best set, status); raises on a malformed row."""
    cands = r["candidates"]
    if not isinstance(cands, list) or len(cands) < 2 or not r["prompt"]:
        raise ValueError("a rank-set row needs a prompt and >= 2 candidates")
    if ("judge_best" in r and r["judge_best"] is None) or ("judge_order" in r and r["judge_order"] is None):
        return cands, 0, [], FAILED  # written by build-rank-set for a judge error
    best = int(r["judge_best"])
    raw_set = r.get("judge_best_set")
    best_set = [int(i) for i in raw_set] if raw_set else [best]
    if not all(0 <= i < len(cands) for i in [best, *best_set]) or best not in best_set:
        raise ValueError("judge_best (and judge_best_set) must index the candidates, judge_best in the set")
    tied = bool(r.get("best_tied")) or len(set(best_set)) > 1
    return cands, best, best_set, TIED if tied else OK


def rank_set(**_: Any) -> datasets.DatasetDict:
    path = os.environ.get(RANK_ENV, "").strip()
    if not path:
        raise ValueError(f"{RANK_ENV} is not set: build a rank set with `icdpo-eval build-rank-set --task "
                         f"hh_harmless --out rank.jsonl`, then run with {RANK_ENV}=rank.jsonl")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{RANK_ENV}={path}: no such file")
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            cands, best, best_set, status = _parse_row(r)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{n}: malformed rank-set row ({exc})") from None
        rows.append({"id": str(r.get("id", n)), "prompt": r["prompt"], "candidates": [str(c) for c in cands],
                     "judge_best": best, "judge_best_set": best_set, "judge_status": status,
                     "source_task": r.get("source_task") or "hh_harmless"})
    if not rows:
        raise ValueError(f"{path}: empty rank set")
    counts = {s: sum(r["judge_status"] == s for r in rows) for s in (OK, TIED, FAILED)}
    if counts[TIED] or counts[FAILED]:
        log.warning("rank set %s: %d rows; mrr over the %d with a unique judge best (%d tied, %d without a "
                    "judge order are left out)", path, len(rows), counts[OK], counts[TIED], counts[FAILED])
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def reciprocal_rank(scores: Sequence[float], best: int) -> float:
    """1 / (1 + number of candidates scored at least as high as ``best``, other than it)."""
    ahead = sum(1 for i, s in enumerate(scores) if i != best and s >= scores[best])
    return 1.0 / (1 + ahead)


def process_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, float | int | None]:
    status = doc.get("judge_status") or OK
    if status != OK:
        return {"mrr": None, "judge_tied": int(status == TIED), "judge_failed": int(status == FAILED)}
    scores = [float(r[0]) if isinstance(r, (tuple, list)) else float(r) for r in results]
    return {"mrr": reciprocal_rank(scores, int(doc["judge_best"])), "judge_tied": 0, "judge_failed": 0}


def mrr_aggregate(items: Sequence[float | None]) -> float:
    """Mean reciprocal rank over the rows with a unique judge best (None items are the excluded rows)."""
    kept = [float(x) for x in items if x is not None]
    return sum(kept) / len(kept) if kept else math.nan


def count_aggregate(items: Sequence[int]) -> int:
    """How many rows were excluded for this reason."""
    return int(sum(items))
