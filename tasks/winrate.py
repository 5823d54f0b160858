"""Metric ``winrate`` (paper metric 2: LLM-judge win rate vs the dataset's chosen response).

Used by the task variants ``hh_harmless_winrate``, ``hh_helpful_winrate`` and
``hh_harmless_mini_winrate`` (the plain tasks never call a judge), which include
``_winrate_template.yaml``::

    custom_dataset: !function icdpo_eval.tasks.utils.load   # dataset_kwargs: {data: ..., sample: winrate}
    process_results: !function icdpo_eval.tasks.winrate.process_results
    metric_list: winrate / winrate_n / winrate_failed with the aggregations below

**Sample.** The tasks evaluate a fixed-seed sample of ``winrate_n`` documents (a task setting,
default 200, ``--metadata '{"winrate_n": 50}'``): the documents whose sha256(``"<seed>:<doc id>"``) is among
the N smallest, seed ``winrate_seed`` (default 1234). The ``custom_dataset`` loader (:func:`sampled`, called by
:func:`icdpo_eval.tasks.utils.load` for ``sample: winrate``) keeps only those rows (in
dataset order), so no response is generated for a document that is not judged, and the sample is the
same whatever the row order. The aggregation applies the same rule to the items it receives (at most
N judged; any other item is marked ``"not_sampled"``), so ``--limit k`` judges the first k rows of
the sample.

**Judging.** ``process_results`` makes no API call: it packs a :class:`WinItem` (prompt, response,
reference = the dataset's chosen response). The aggregation judges all items at once with
:func:`icdpo_eval.judges.pairwise.judge_for` the task settings ``judge_model``, ``judge_protocol``,
``judge_workers``, ``judge_max_tries`` (a thread pool, an on-disk verdict cache) and fills
each item in place, so ``--log_samples`` shows every item's outcome, per-order verdicts and judge.
Win = 1, tie = 0.5, loss = 0; ``winrate`` is the mean over the judged items, ``winrate_n`` their
count and ``winrate_failed`` the number of items whose judge answer stayed unparsable (excluded from
the mean, each named in the log). API failures that outlast the retries raise; the verdicts
already received stay cached, so the rerun resumes.

**No key.** The loader checks ``OPENAI_API_KEY`` (and ``OPENAI_BASE_URL``'s form) first, so a missing key
fails before any generation. lm-eval imports this module by its package name (see :mod:`icdpo_eval.tasks.utils`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import datasets

from icdpo_eval.judges.pairwise import JudgeError

log = logging.getLogger("icdpo_eval.tasks.winrate")

class WinItem(dict):
    """``{"id", "prompt", "response", "reference", "length", "reference_length", "outcome", "score",
    "verdicts", "error", "judge"}``; the last five are filled by the aggregation (lengths in tokens of the
    embedded tokenizer, :func:`icdpo_eval.tasks.metrics.response_length`)."""


def in_sample(ids: Iterable[str], n: int, seed: int) -> set[str]:
    """The ``n`` ids with the smallest sha256(``f"{seed}:{id}"``): a sample that depends only on
    the set of ids, not on their order."""
    ranked = sorted(set(ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    return set(ranked[:n])


def sampled(ds: datasets.DatasetDict, n: int, seed: int, split: str = "test") -> datasets.DatasetDict:
    rows = ds[split]
    keep = in_sample(rows["id"], n, seed)
    idx = [i for i, doc_id in enumerate(rows["id"]) if doc_id in keep]
    log.info("winrate: judging a sample of %d of %d documents (winrate_n=%d, winrate_seed=%d)", len(idx), len(rows),
             n, seed)
    return datasets.DatasetDict({**ds, split: rows.select(idx)})


def process_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    from icdpo_eval.tasks.metrics import response_length

    response = str(results[0] if results else "").strip()  # an empty response is judged as such
    doc_id = str(doc.get("id") or hashlib.sha256(doc["prompt"].encode()).hexdigest()[:16])
    reference = str(doc["chosen"]).strip()
    from icdpo_eval.tasks.settings import SETTINGS_FIELD

    item = WinItem(id=doc_id, prompt=doc["prompt"], response=response, reference=reference,
                   outcome=None, score=None, verdicts=None, error=None, judge=None,
                   length=response_length(response), reference_length=response_length(reference),
                   **{SETTINGS_FIELD: doc.get(SETTINGS_FIELD)})
    return {"winrate": item, "winrate_n": item, "winrate_failed": item, "winrate_lc": item,
            "winrate_lc_low": item, "winrate_lc_high": item, "length": item["length"]}


def judge_items(items: Sequence[dict[str, Any]]) -> str:
    """Judge every sampled, not yet judged item in one concurrent batch; return the judge's name."""
    from icdpo_eval.judges.pairwise import JudgeSettings, judge_for
    from icdpo_eval.tasks.settings import settings_of

    cfg = settings_of(items[0])
    judge = judge_for(JudgeSettings.of(cfg))
    keep = in_sample((it["id"] for it in items), cfg.winrate_n, cfg.winrate_seed)
    todo = []
    for it in items:
        if it["id"] not in keep:
            it.update(outcome="not_sampled", score=None)
        elif it.get("outcome") is None or it.get("judge") != judge.name:
            todo.append(it)
    if todo:
        out = judge.judge([it["prompt"] for it in todo], [(it["response"], it["reference"]) for it in todo],
                          ids=[it["id"] for it in todo])
        for it, j in zip(todo, out, strict=True):
            it.update(outcome=j.outcome, score=j.score, verdicts=j.verdicts, error=j.error, judge=judge.name)
        counts = {k: sum(it["outcome"] == k for it in items) for k in ("win", "tie", "loss", "error")}
        log.info("winrate: judge %s: %s; %s", judge.name, counts, judge.stats)
        for it in [it for it in items if it["outcome"] == "error"][:20]:
            log.warning("winrate: failed item: %s", it["error"])
    return judge.name


def winrate_aggregate(items: Sequence[dict[str, Any]]) -> float:
    """Mean score (win 1, tie 0.5, loss 0) of the judged items; an error (never a NaN) when none was judged."""
    if not items:
        raise JudgeError("winrate: no document to judge")
    judge_items(items)
    scores = [float(it["score"]) for it in items if it["score"] is not None]
    if not scores:
        failed = sum(it["outcome"] == "error" for it in items)
        raise JudgeError(f"winrate: none of the {len(items)} documents was judged ({failed} unparsable judge "
                         "answers after a re-ask); check the judge model (task setting judge_model) and its server")
    return sum(scores) / len(scores)


def _lc(items: Sequence[dict[str, Any]]):
    """The length-controlled win rate of the judged items (:func:`icdpo_eval.stats.lc_winrate`), computed
    once per item list from the same cached verdicts as ``winrate``."""
    from icdpo_eval.stats import lc_winrate

    judge_items(items)
    judged = [it for it in items if it["score"] is not None]
    # keyed by the data itself (not by object ids, which a later list may reuse): the three LC metrics of
    # one item list share one fit and one bootstrap
    key = tuple((float(it["score"]), it["length"], it["reference_length"]) for it in judged)
    if _LC_MEMO.get("key") != key:
        _LC_MEMO.update(key=key, value=lc_winrate(*zip(*key)) if key else lc_winrate([], [], []))
    return _LC_MEMO["value"]


_LC_MEMO: dict[str, Any] = {}


def winrate_lc_aggregate(items: Sequence[dict[str, Any]]) -> float:
    """Length-controlled win rate: the judge's preference predicted at zero length difference (AlpacaEval 2's
    GLM, docs/length.md); NaN if nothing was judged."""
    return _lc(items).value if items else float("nan")


def winrate_lc_low_aggregate(items: Sequence[dict[str, Any]]) -> float:
    """Lower end of the LC win rate's 95% bootstrap CI."""
    return _lc(items).low if items else float("nan")


def winrate_lc_high_aggregate(items: Sequence[dict[str, Any]]) -> float:
    """Upper end of the LC win rate's 95% bootstrap CI."""
    return _lc(items).high if items else float("nan")


def winrate_n_aggregate(items: Sequence[dict[str, Any]]) -> int:
    """How many items were judged (the denominator of ``winrate``)."""
    if not items:
        return 0
    judge_items(items)
    return sum(1 for it in items if it["score"] is not None)


def winrate_failed_aggregate(items: Sequence[dict[str, Any]]) -> int:
    """How many sampled items could not be judged (unparsable answers, re-asked once)."""
    if not items:
        return 0
    judge_items(items)
    return sum(1 for it in items if it["outcome"] == "error")
