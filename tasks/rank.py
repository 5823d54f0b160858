"""The MRR ranking task ``hh_harmless_rank`` (the paper's metric 3).

Data: the rank set named by the task setting ``rank_set`` (``--metadata '{"rank_set": "rank.jsonl"}'``; built by
``icdpo-eval build-rank-set``): each row's 3
candidates are the choices; the judge's best candidate is the target. A model's ``loglikelihood`` is its
scorer (S / Ŝ / ICL for ``icdpo``, the teacher for ``rm_bon``, the reward for ``rm``), so lm-eval ranks
the choices by it. Metrics:

* ``mrr`` = mean over the prompts whose judge best is unique of 1 / (rank of the judge's best candidate
  in the scorer's order); a candidate tied with it in the scorer's order counts as ranked above it
  (pessimistic). No row qualifying is an error naming the counts, never a NaN.
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

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from icdpo_eval.data.datasets import BadLine, iter_jsonl
from icdpo_eval.data.hh import DataError, DataFileNotFoundError, check_text

log = logging.getLogger("icdpo_eval.tasks.rank")

RANK_SETTING = "rank_set"
OK, TIED, FAILED = "ok", "tied", "failed"


RANK_HINT = ("each line needs a 'prompt' string, 'candidates' (a list of >= 2 strings) and 'judge_best' (an index "
             "into candidates, or null when the judge failed), as `icdpo-eval build-rank-set` writes")


def _index(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not float(x).is_integer():
        raise DataError(f"{what} must be an integer index, not {x!r}"[:200])
    return int(x)


def _parse_row(r: Any) -> tuple[list[str], int, list[int], str]:
    """(candidates, judge best (0 when failed), best set, status); raises DataError on a malformed row."""
    if not isinstance(r, dict):
        raise DataError(f"not a JSON object ({type(r).__name__})")
    prompt, cands = r.get("prompt"), r.get("candidates")
    if not isinstance(prompt, str) or not prompt:
        raise DataError("'prompt' must be a non-empty string")
    check_text(prompt, "'prompt'")
    if not isinstance(cands, list) or len(cands) < 2 or not all(isinstance(c, str) for c in cands):
        raise DataError("'candidates' must be a list of >= 2 strings")
    for c in cands:
        check_text(c, "a candidate")
    if ("judge_best" in r and r["judge_best"] is None) or ("judge_order" in r and r["judge_order"] is None):
        return cands, 0, [], FAILED  # written by build-rank-set for a judge error
    if "judge_best" not in r:
        raise DataError("no 'judge_best'")
    best = _index(r["judge_best"], "'judge_best'")
    raw_set = r.get("judge_best_set")
    if raw_set is not None and not isinstance(raw_set, list):
        raise DataError("'judge_best_set' must be a list of indices")
    best_set = [_index(i, "a 'judge_best_set' entry") for i in raw_set] if raw_set else [best]
    if not all(0 <= i < len(cands) for i in [best, *best_set]) or best not in best_set:
        raise DataError("judge_best (and judge_best_set) must index the candidates, judge_best in the set")
    tied = bool(r.get("best_tied")) or len(set(best_set)) > 1
    return cands, best, best_set, TIED if tied else OK


def load_rank_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a rank-set file (see :func:`rank_set`); DataError naming ``file:line`` on a bad line."""
    if not Path(path).is_file():
        raise DataFileNotFoundError(f"task setting rank_set={path}: no such file; build one with "
                                    "`icdpo-eval build-rank-set`")
    rows = []
    for n, r in iter_jsonl(path):
        try:
            if isinstance(r, BadLine):
                raise DataError(str(r))
            cands, best, best_set, status = _parse_row(r)
            rid, source = r.get("id", n), r.get("source_task") or "hh_harmless"
            if isinstance(rid, bool) or not isinstance(rid, (str, int)):
                raise DataError(f"'id' must be a string or an integer, not {type(rid).__name__}")
            if not isinstance(source, str):
                raise DataError(f"'source_task' must be a task name, not {type(source).__name__}")
            check_text(str(rid), "'id'")
            check_text(source, "'source_task'")
        except DataError as exc:
            raise DataError(f"{path}:{n}: malformed rank-set row ({exc}); {RANK_HINT}") from None
        rows.append({"id": str(rid), "prompt": r["prompt"], "candidates": list(cands), "judge_best": best,
                     "judge_best_set": best_set, "judge_status": status, "source_task": source})
    if not rows:
        raise DataError(f"{path}: empty rank set; {RANK_HINT}")
    return rows


def rank_set(**metadata: Any) -> datasets.DatasetDict:
    """``custom_dataset`` of ``hh_harmless_rank``: the rows of the rank set named by the task setting ``rank_set``."""
    from icdpo_eval.tasks.settings import task_settings, with_settings

    cfg = task_settings(metadata)
    path = cfg.rank_set
    if not path:
        raise DataError("task setting rank_set is not given: build a rank set with `icdpo-eval build-rank-set --task "
                        "hh_harmless --out rank.jsonl`, then run with --metadata '{\"rank_set\": \"rank.jsonl\"}'")
    rows = load_rank_rows(path)
    counts = {s: sum(r["judge_status"] == s for r in rows) for s in (OK, TIED, FAILED)}
    if counts[TIED] or counts[FAILED]:
        log.warning("rank set %s: %d rows; mrr over the %d with a unique judge best (%d tied, %d without a "
                    "judge order are left out)", path, len(rows), counts[OK], counts[TIED], counts[FAILED])
    if not counts[OK]:
        raise DataError(f"rank set {path}: none of its {len(rows)} rows has a unique judge best ({counts[TIED]} tied, "
                        f"{counts[FAILED]} without a judge order): mrr would be undefined; rebuild it with "
                        "`icdpo-eval build-rank-set` (check the judge)")
    return with_settings(datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}), cfg)


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
    """Mean reciprocal rank over the rows with a unique judge best (None items are the excluded rows); an error,
    never a NaN, when there is none."""
    kept = [float(x) for x in items if x is not None]
    if not kept:
        raise DataError(f"mrr: none of the {len(items)} rows has a unique judge best; rebuild the rank set")
    return sum(kept) / len(kept)


def count_aggregate(items: Sequence[int]) -> int:
    """How many rows were excluded for this reason."""
    return int(sum(items))
