"""What each document cost: a span of the process's :data:`icdpo_eval.runtime.METER` turned into a record, and the
records of a run summed (``config.icdpo_eval.compute``). docs/compute.md describes every field.

A document's record (``sample["icdpo_eval"]["compute"]``, the result journal)::

    {"seconds": 4.1, "generated_tokens": 54, "forward_calls": 52, "forward_tokens": 1290, "cached_tokens": 980,
     "padding_tokens": 12, "rm_calls": 0, "api_calls": 0,
     "models": {"gemma-3-270m": {"calls": 52, "prefill_tokens": .., "decode_tokens": .., "score_tokens": ..}},
     "reused": {"generated_tokens": .., "forward_calls": .., "forward_tokens": ..},   # only when candidates were reused
     "documents_in_batch": 1}

``forward_tokens`` = prefill + decode + scoring positions over every model the method ran (base, teacher, guide),
padding included; reward-model calls are counted apart (``rm_calls``), not as forward tokens. ``reused``: candidates
served from the candidate store, at what drawing them cost when they were drawn: not spent in this run, but part of
what the method costs at its settings (:func:`cost`). Documents decoded in one batch share the batch's counts
equally (``documents_in_batch``; batch_size=1, the default of most methods, counts each document alone).
"""

from __future__ import annotations

from typing import Any

TOKEN_KINDS = ("prefill_tokens", "decode_tokens", "score_tokens")
TOTALS = ("seconds", "generated_tokens", "forward_calls", "forward_tokens", "cached_tokens", "padding_tokens",
          "rm_calls", "api_calls")
COST = ("generated_tokens", "forward_calls", "forward_tokens")  # what `reused` adds to a document's cost


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(float(x), 3)


def record(delta: dict[str, dict[str, int]], seconds: float, share: int = 1) -> dict[str, Any]:
    """One document's record from a METER span (:meth:`icdpo_eval.runtime.Meter.since`) that ``share`` documents
    spent together in ``seconds``."""
    share = max(1, share)
    models: dict[str, dict[str, int | float]] = {}
    tot = dict.fromkeys(TOTALS, 0.0)
    reused = dict.fromkeys(COST, 0.0)
    for model, c in sorted(delta.items()):
        mine = {k: _num(v / share) for k, v in sorted(c.items()) if not k.startswith("reused_")}
        if mine:
            models[model] = mine
        tot["forward_calls"] += c.get("calls", 0) / share
        tot["forward_tokens"] += sum(c.get(k, 0) for k in TOKEN_KINDS) / share
        for k in ("generated_tokens", "cached_tokens", "padding_tokens", "rm_calls", "api_calls"):
            tot[k] += c.get(k, 0) / share
        reused["forward_calls"] += c.get("reused_calls", 0) / share
        reused["forward_tokens"] += sum(c.get(f"reused_{k}", 0) for k in TOKEN_KINDS) / share
        reused["generated_tokens"] += c.get("reused_generated_tokens", 0) / share
    tot["seconds"] = seconds / share
    out: dict[str, Any] = {k: (round(v, 3) if k == "seconds" else _num(v)) for k, v in tot.items()}
    out["models"] = models
    if any(reused.values()):
        out["reused"] = {k: _num(v) for k, v in reused.items()}
    out["documents_in_batch"] = share
    return out


def cost(rec: dict[str, Any] | None, field: str) -> float | None:
    """What the method costs for one document at its settings: ``field`` spent plus, for the fields the candidate
    store can serve (:data:`COST`), what the reused candidates cost when they were drawn. None without a record."""
    if not rec or field not in rec:
        return None
    return float(rec[field]) + float((rec.get("reused") or {}).get(field, 0.0) if field in COST else 0.0)


def summarise(records: list[dict[str, Any]], resumed: int = 0) -> dict[str, Any]:
    """A run's totals and per-document means over its documents' records (``config.icdpo_eval.compute``)."""
    n = len(records)
    total = {k: _num(sum(float(r.get(k, 0)) for r in records)) for k in TOTALS}
    total["seconds"] = round(sum(float(r.get("seconds", 0)) for r in records), 3)
    reused = {k: _num(sum(float((r.get("reused") or {}).get(k, 0)) for r in records)) for k in COST}
    models: dict[str, dict[str, float]] = {}
    for r in records:
        for m, c in (r.get("models") or {}).items():
            for k, v in c.items():
                models.setdefault(m, {})[k] = _num(models.get(m, {}).get(k, 0) + v)
    out: dict[str, Any] = {"documents": n, "documents_resumed": resumed, "total": total,
                           "per_document": {k: round(float(v) / n, 3) if n else 0.0 for k, v in total.items()},
                           "models": models}
    if any(reused.values()):
        out["reused"] = reused
        out["cost_per_document"] = {k: round((float(total[k]) + float(reused[k])) / n, 3) if n else 0.0
                                    for k in COST}
    return out
