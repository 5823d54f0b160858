"""What a method saw and computed for each document, carried into lm-eval's ``--log_samples`` records.

lm-eval's samples hold the document, the request and the response; our models also know the demos they
retrieved, every candidate, each scorer term and which candidate won. :meth:`MethodLM.generate_until`
notes that record here per (task, doc id) (from the sampling pass, or from the result journal for a resumed
document), with the template each task's contexts were built from; the evaluator hook
(:mod:`icdpo_eval._lm_eval_hook`) clears the notes before a run and, after it, adds them to every sample
as ``sample["icdpo_eval"]`` and the templates to ``config.icdpo_eval.templates``. Under data parallel every
rank notes its own documents; they are gathered to every rank (lm-eval writes rank 0's samples).

The HTML report (:mod:`icdpo_eval.report.html`) reads these fields; a run without them (``--model hf``)
simply has fewer to show.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

FIELD = "icdpo_eval"  # the key in each lm-eval sample

_DOCS: dict[tuple[str, int], dict[str, Any]] = {}
_TEMPLATES: dict[str, dict[str, Any]] = {}


def clear() -> None:
    _DOCS.clear()
    _TEMPLATES.clear()


def note(task: str | None, doc_id: int, record: dict[str, Any], *, resumed: bool = False) -> None:
    """One document's record (the journal record less its bookkeeping keys); ``resumed``: read from the journal."""
    rec = {k: v for k, v in record.items() if k not in ("key", "task", "doc_id")}
    if resumed:
        rec["resumed"] = True
    _DOCS[(str(task), int(doc_id))] = rec


def note_template(task: str | None, template: Any) -> None:
    _TEMPLATES[str(task)] = asdict(template)


def _gathered() -> tuple[dict, dict]:
    docs, templates = dict(_DOCS), dict(_TEMPLATES)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (docs, templates))
            for d, t in parts:
                docs.update(d)
                templates.update(t)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return docs, templates


def attach(results: Any) -> None:
    """Add the notes to lm-eval's results dict in place (its ``samples`` and ``config``)."""
    docs, templates = _gathered()
    if not isinstance(results, dict):
        return
    for task, samples in (results.get("samples") or {}).items():
        for smp in samples:
            rec = docs.get((str(task), int(smp.get("doc_id", -1))))
            if rec is not None:
                smp[FIELD] = rec
    if templates and isinstance(results.get("config"), dict):
        results["config"].setdefault(FIELD, {})["templates"] = templates
    spent: dict[str, list[dict[str, Any]]] = {}
    resumed: dict[str, int] = {}
    for (task, _), rec in sorted(docs.items()):
        if isinstance(rec.get("compute"), dict):
            spent.setdefault(task, []).append(rec["compute"])
            resumed[task] = resumed.get(task, 0) + bool(rec.get("resumed"))
    if spent and isinstance(results.get("config"), dict):
        from icdpo_eval.models.compute import summarise

        results["config"].setdefault(FIELD, {})["compute"] = {t: summarise(r, resumed[t]) for t, r in spent.items()}
