"""Running the cells: each (row, task) an lm-eval run with ``--log_samples``, kept under ``DIR/cells/<key>/`` (a
finished cell is reused), its per-document scores and lengths, and ``documents.jsonl`` (what the exactness gate
reads).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdpo_eval.leaderboard.spec import Cell
from icdpo_eval.runtime import atomic_write


# ------------------------------------------------------------------------------------ running
def run_cell(cell: Cell) -> dict[str, Any]:
    """Run one cell through lm-eval in this process (:func:`icdpo_eval.leaderboard.cells.run_cell`)."""
    from icdpo_eval.leaderboard.cells import run_cell as run

    return run(cell)


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, set):
        return sorted(o)
    return str(o)


def per_doc_scores(samples: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """doc id -> score on the table's scale (reward x 100 for ``rm_reward``-style dict items)."""
    out: dict[str, float] = {}
    for s in samples:
        v = s.get(metric)
        if isinstance(v, dict) and "reward" in v:
            out[str(s["doc_id"])] = 100.0 * float(v["reward"])
        elif isinstance(v, (int, float)):
            out[str(s["doc_id"])] = float(v)
    return out


@dataclass
class CellResult:
    cell: Cell
    value: float
    scores: dict[str, float]
    rm: str
    higher_is_better: bool
    reused: bool = False
    lengths: dict[str, float] = field(default_factory=dict)  # doc id -> response length (tokens)
    candidates: dict[str, int] = field(default_factory=dict)  # documents whose candidates were reused / sampled
    compute: dict[str, dict[str, float]] = field(default_factory=dict)  # doc id -> what it cost (doc_compute)


def cell_done(cell: Cell, out: Path) -> bool:
    return (out / "cells" / cell.key() / "cell.json").exists()


def ensure_cell(cell: Cell, out: Path, runner: Callable[[Cell], dict[str, Any]] | None = None,
                rerun: bool = False, run: bool | None = None) -> CellResult | None:
    """Reuse ``out/cells/<key>/cell.json`` when present (and not ``rerun``), else run and store (``run`` forces
    either; on a rank other than 0 the run's results are None and nothing is stored)."""
    cdir = out / "cells" / cell.key()
    marker = cdir / "cell.json"
    if run is False or (run is None and marker.exists() and not rerun):
        d = json.loads(marker.read_text())
        lengths = d.get("lengths")
        if lengths is None:  # a cell stored before lengths were recorded: read them off its samples
            with open(cdir / f"samples_{cell.task}.jsonl", encoding="utf-8") as fh:
                lengths = doc_lengths([json.loads(line) for line in fh if line.strip()])
        comp = d.get("compute")
        if comp is None:  # a cell stored before compute was recorded: read it off its samples (if they have it)
            with open(cdir / f"samples_{cell.task}.jsonl", encoding="utf-8") as fh:
                comp = doc_compute([json.loads(line) for line in fh if line.strip()], {})
        return CellResult(cell, d["value"], d["scores"], d["rm"], d["higher_is_better"], reused=True,
                          lengths=lengths, compute=comp)
    t0 = time.time()
    res = (runner or run_cell)(cell)
    if res is None:  # a rank > 0 of a data-parallel run: rank 0 has the results
        return None
    task_res = res["results"][cell.task]
    value = float(task_res[f"{cell.metric},none"])
    rm = str(task_res.get("rm,none", ""))
    hib = bool(res.get("higher_is_better", {}).get(cell.task, {}).get(cell.metric, True))
    samples = res.get("samples", {}).get(cell.task, [])
    scores = per_doc_scores(samples, cell.metric)
    lengths = doc_lengths(samples)
    cdir.mkdir(parents=True, exist_ok=True)
    (cdir / f"results_{cell.task}.json").write_text(
        json.dumps({k: v for k, v in res.items() if k != "samples"}, indent=2, default=_jsonable))
    with open(cdir / f"samples_{cell.task}.jsonl", "w") as fh:
        for s in samples:
            fh.write(json.dumps(s, default=_jsonable) + "\n")
    candidates = dict((res.get("config") or {}).get("candidates") or {})
    comp = doc_compute(samples, ((res.get("config") or {}).get("icdpo_eval") or {}).get("compute", {}).get(cell.task))
    record = {"row": cell.row, "config": cell.config(), "value": value, "rm": rm, "higher_is_better": hib,
              "scores": scores, "lengths": lengths, "candidates": candidates, "compute": comp,
              "seconds": round(time.time() - t0, 1)}
    # written last: a cell without it is unfinished and reruns
    atomic_write(marker, lambda fh: fh.write(json.dumps(record, indent=2, default=_jsonable)))
    return CellResult(cell, value, scores, rm, hib, lengths=lengths, candidates=candidates, compute=comp)


COMPUTE_FIELDS = ("generated_tokens", "forward_tokens", "forward_calls", "seconds", "rm_calls")


def doc_compute(samples: list[dict[str, Any]], summary: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """doc id -> what producing its response cost at the row's settings (:func:`icdpo_eval.models.compute.cost`:
    candidates served from the candidate store count at what drawing them cost), from each sample's record; a run
    whose model records none per document (the ``hf`` row, counted for the whole cell) gives every document the
    cell's per-document mean. Empty when neither is there."""
    from icdpo_eval.models.compute import cost

    out: dict[str, dict[str, float]] = {}
    for s in samples:
        rec = (s.get("icdpo_eval") or {}).get("compute")
        if isinstance(rec, dict):
            out[str(s["doc_id"])] = {f: cost(rec, f) or 0.0 for f in COMPUTE_FIELDS}
            if rec.get("reused"):
                out[str(s["doc_id"])]["reused_forward_tokens"] = float(rec["reused"].get("forward_tokens", 0))
    if not out and summary and summary.get("per_document"):
        mean = {f: float(summary["per_document"].get(f, 0.0)) for f in COMPUTE_FIELDS}
        out = {str(s["doc_id"]): dict(mean) for s in samples}
    return out


def doc_lengths(samples: list[dict[str, Any]]) -> dict[str, float]:
    """doc id -> response length in tokens: the task's ``length`` metric (a ``*_pairs`` task's ``len_diff``,
    chosen - rejected), else counted here with the same tokenizer
    (:func:`icdpo_eval.tasks.metrics.response_length`); a document without a text response (multiple choice:
    its loglikelihoods) has none."""
    out = per_doc_scores(samples, "length") or per_doc_scores(samples, "len_diff")
    pending: dict[str, str] = {}  # doc id -> a text response still to count
    for smp in samples:
        text = (smp.get("filtered_resps") or [""])[0]
        if str(smp["doc_id"]) not in out and isinstance(text, str):
            pending[str(smp["doc_id"])] = text.strip()
    nonempty = {i: t for i, t in pending.items() if t}
    if nonempty:  # one batched call to the tokenizer of tasks.metrics.response_length
        from icdpo_eval.data.datasets import count_tokens

        out.update(zip(nonempty, map(float, count_tokens(list(nonempty.values())))))
    out.update((i, 0.0) for i, t in pending.items() if not t)
    return out


def write_documents(results: dict[tuple[str, str], CellResult], out: Path) -> Path:
    """``out/documents.jsonl``: every cell's per-document response and reward, in spec order (the input of
    the exactness gate, :mod:`icdpo_eval.gates.exact`)."""
    from icdpo_eval.gates.exact import DOCUMENTS, document_rows

    path = out / DOCUMENTS
    with open(path, "w", encoding="utf-8") as fh:
        for (row, task), r in results.items():
            samples_path = out / "cells" / r.cell.key() / f"samples_{task}.jsonl"
            with open(samples_path, encoding="utf-8") as sf:
                samples = [json.loads(line) for line in sf if line.strip()]
            for d in document_rows(row, task, samples, r.cell.metric):
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    return path


