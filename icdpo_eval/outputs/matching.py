"""Saved responses matched to a task's documents, strictly and visibly (docs/score.md).

A row names its document by ``doc_id`` or by its exact prompt: the task document's prompt as lm-eval holds it, or as
the released code reads it (``dialogue=pro``, :func:`icdpo_eval.data.hh.prepare_dialogue`). A row with both must name
the same document. A doc id out of range, a prompt and doc id that disagree, or doc ids of another task are errors;
an unmatched row, a second row for a document and (with ``--limit N``) a document of the first N with no row are
errors naming ``file:line`` (or the document) unless ``allow_partial``, which counts them in the results instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from icdpo_eval.outputs.formats import OutputsError, Row


@dataclass
class Matched:
    """One generator's responses by doc id, where each was read, and what did not match."""

    generator: str
    responses: dict[int, str] = field(default_factory=dict)
    where: dict[int, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"rows": 0, "matched": 0, "unmatched": 0,
                                                            "duplicated": 0, "outside_limit": 0, "missing": 0,
                                                            "empty": 0})
    first_problem: str | None = None

    def problem(self, kind: str, text: str) -> None:
        self.counts[kind] += 1
        self.first_problem = self.first_problem or text


def task_docs(task: str, metadata: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The task's evaluation documents in lm-eval's order (doc id = index), loaded with the run's task settings."""
    from icdpo_eval import harness

    tm = harness.task_manager([task], metadata=metadata)
    if not tm.match_tasks([task]):
        raise OutputsError(f"--task {task}: unknown task; `lm_eval ls tasks` lists them")
    obj = tm.load([task])["tasks"][task]
    if getattr(obj, "OUTPUT_TYPE", None) != "generate_until":
        raise OutputsError(f"--task {task}: not a generation task; saved responses are scored by a generation task "
                           "(hh_harmless, hh_helpful, synthetic_gpt, their _winrate twins, hh_harmless_mini, ...)")
    return list(obj.eval_docs)


def prompt_index(docs: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Prompt -> the doc ids with that prompt (as lm-eval holds it and as the released code reads it)."""
    from icdpo_eval.data.hh import prepare_dialogue

    index: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        prompt = d.get("prompt")
        if not isinstance(prompt, str):
            continue
        for p in dict.fromkeys((prompt, prepare_dialogue(prompt))):
            index.setdefault(p, []).append(i)
    return index


def match(rows: list[Row], task: str, docs: list[dict[str, Any]], *, limit: int | None = None,
          allow_partial: bool = False) -> dict[str, Matched]:
    """Each generator's rows matched to ``docs`` (see the module docstring)."""
    index = prompt_index(docs)
    out: dict[str, Matched] = {}
    for row in rows:
        m = out.setdefault(row.generator, Matched(row.generator))
        m.counts["rows"] += 1
        if row.doc_id is not None and row.prompt is None and row.task not in (None, task):
            raise OutputsError(f"{row.where}: the row's doc_id is a document of {row.task}, not of --task {task}; "
                               f"score it with --task {row.task}, or give outputs that carry their prompts")
        doc: int | None = None
        if row.doc_id is not None and row.task in (None, task):
            if row.doc_id >= len(docs):
                raise OutputsError(f"{row.where}: doc_id {row.doc_id} is out of range ({task} has {len(docs)} "
                                   "documents)")
            if row.prompt is not None and row.doc_id not in index.get(row.prompt, []):
                raise OutputsError(f"{row.where}: doc_id {row.doc_id} and the row's prompt name different documents "
                                   f"of {task}")
            doc = row.doc_id
        else:
            ids = index.get(row.prompt or "", [])
            doc = next((i for i in ids if i not in m.responses), ids[0] if ids else None)
            if doc is None:
                m.problem("unmatched", f"{row.where}: its prompt is no document's prompt of {task} (exact match, "
                          "as lm-eval holds it or as the released code reads it)")
                continue
        if limit is not None and doc >= limit:
            m.counts["outside_limit"] += 1
            continue
        if doc in m.responses:
            m.problem("duplicated", f"{row.where}: a second response for {task} document {doc} (the first: "
                      f"{m.where[doc]})")
            continue
        m.responses[doc], m.where[doc] = row.response, row.where
        m.counts["matched"] += 1
        m.counts["empty"] += not row.response.strip()
    for m in out.values():
        if limit is not None:
            missing = [i for i in range(min(limit, len(docs))) if i not in m.responses]
            m.counts["missing"] = len(missing)
            if missing and m.first_problem is None:
                m.first_problem = (f"{m.generator}: no response for {task} document {missing[0]} ({len(missing)} of "
                                   f"the first {min(limit, len(docs))} documents have none)")
        if m.first_problem and not allow_partial:
            raise OutputsError(f"{m.first_problem}; pass --allow-partial to score what matched (the counts go into "
                               "the results)")
        if not m.responses:
            raise OutputsError(f"{m.generator}: no row matched a document of {task}")
    return out
