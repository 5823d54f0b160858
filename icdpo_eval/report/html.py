"""``index.html``: one self-contained page per leaderboard or set of lm-eval runs (``icdpo-eval report``).

The page holds the table (as ``leaderboard.md``: value, 95% CI, n, length, LC; sortable), the chart (the
leaderboard's matplotlib figure, inlined as SVG), a document browser (the dialogue; per row its response,
RM reward, length, the judge's verdicts; and for a best-of-N method the demos it retrieved, every candidate
with each scorer term, the score and which one won), two rows side by side with a filter for the documents
where they differ most, and each row's provenance. Everything comes from files the runs already write:
lm-eval's results JSON and ``--log_samples`` records, where our models add ``sample["icdpo_eval"]``
(:mod:`icdpo_eval.models.details`).

Safety: every text from the data reaches the page as JSON inside ``<script type="application/json">`` with
``<``, ``>`` and ``&`` escaped, and the page's script inserts it with ``textContent`` only, so a response
holding ``<script>`` or ``</textarea>`` shows as text and never runs. No server, no network: styles and
script are inline (the Jinja2 template ``templates/report.html.j2``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdpo_eval.errors import UserError
from icdpo_eval.models.details import FIELD

CONTENT_WARNING = ("HH-RLHF contains offensive and upsetting text (red-teaming dialogues): the documents below "
                   "show it as the dataset holds it.")


class ReportError(UserError):
    """A results folder the report cannot read (one line, naming what is missing)."""


@dataclass
class Run:
    """One (row, task): lm-eval's results dict and its samples."""

    row: str
    model: str
    model_args: dict[str, Any]
    task: str
    results: dict[str, Any]
    samples: list[dict[str, Any]]
    metric: str = "rm_reward"
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ reading
def _samples_file(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def runs_of_leaderboard(out: Path) -> tuple[list[Run], str | None]:
    """The runs of a leaderboard folder (``out/cells/*``, in ``run.json``'s row order) and its reference row."""
    cells = sorted((out / "cells").glob("*/cell.json"))
    order: list[str] = []
    if (out / "run.json").exists():
        order = [r["row"] for r in json.loads((out / "run.json").read_text())]
    runs = []
    for marker in cells:
        d = json.loads(marker.read_text())
        cfg, task = d["config"], d["config"]["task"]
        res_path, smp_path = marker.parent / f"results_{task}.json", marker.parent / f"samples_{task}.jsonl"
        if not res_path.exists() or not smp_path.exists():
            continue
        runs.append(Run(d["row"], cfg["model"], cfg.get("model_args") or {}, task, json.loads(res_path.read_text()),
                        _samples_file(smp_path), cfg.get("metric", "rm_reward")))
    runs.sort(key=lambda r: (order.index(r.row) if r.row in order else len(order), r.row))
    reference = None
    csv_path = out / "leaderboard.csv"
    if csv_path.exists():
        import csv

        with open(csv_path, newline="") as fh:
            reference = next((r["reference"] for r in csv.DictReader(fh) if r.get("reference")), None)
    return runs, reference


def runs_of_lm_eval(folder: Path) -> list[Run]:
    """The runs under ``lm_eval --output_path FOLDER --log_samples`` folders: each ``results_<date>.json`` and its
    ``samples_<task>_<date>.jsonl`` files."""
    found = sorted(folder.rglob("results_*.json")) if folder.is_dir() else [folder]
    runs: list[Run] = []
    for res_path in found:
        date_id = res_path.stem[len("results_"):]
        res = json.loads(res_path.read_text())
        cfg = res.get("config") or {}
        model = str(cfg.get("model", "?"))
        args = cfg.get("model_args") or {}
        if isinstance(args, str):
            from lm_eval.utils import simple_parse_args_string

            args = simple_parse_args_string(args)
        for task in res.get("results", {}):
            smp = res_path.parent / f"samples_{task}_{date_id}.jsonl"
            if not smp.exists():
                raise ReportError(f"{res_path} has no samples_{task}_{date_id}.jsonl beside it: rerun lm_eval with "
                                  "--log_samples (the report shows each document's response)")
            metric = "rm_reward" if "rm_reward,none" in res["results"][task] else next(
                (k.split(",")[0] for k in res["results"][task] if k.endswith(",none") and "stderr" not in k), "acc")
            runs.append(Run("", model, dict(args), task, res, _samples_file(smp), metric))
    # row names: the model, then what tells its runs apart
    for r in runs:
        shown = ",".join(f"{k}={v}" for k, v in r.model_args.items() if k not in ("device", "batch_size"))
        r.row = r.model + (f" ({shown})" if shown else "")
    return runs


def load_runs(paths: list[Path]) -> tuple[list[Run], str | None, str]:
    """Runs of leaderboard folders and/or lm-eval output folders; (runs, reference row, title)."""
    runs: list[Run] = []
    reference = None
    for p in paths:
        if not p.exists():
            raise ReportError(f"{p} does not exist")
        if (p / "cells").is_dir():
            got, ref = runs_of_leaderboard(p)
            reference = reference or ref
            if not got:
                raise ReportError(f"{p}: no finished cell (looked for {p}/cells/*/cell.json with its results and "
                                  "samples files)")
        else:
            got = runs_of_lm_eval(p)
            if not got:
                raise ReportError(f"{p}: no lm-eval results (looked for results_*.json under it, as written by "
                                  "`lm_eval ... --output_path DIR --log_samples`, and for a leaderboard's cells/)")
        runs += got
    seen: dict[tuple[str, str], int] = {}
    for r in runs:  # the same row name twice on one task (two folders): number them
        n = seen[(r.row, r.task)] = seen.get((r.row, r.task), 0) + 1
        if n > 1:
            r.row = f"{r.row} #{n}"
    return runs, reference, " + ".join(p.name or str(p) for p in paths)


# ------------------------------------------------------------------------------------------ the page data
def _clean(o: Any) -> Any:
    """JSON-safe: non-finite floats -> None (JSON has no Infinity), tuples -> lists."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if o is None or isinstance(o, (str, int, bool)):
        return o
    if hasattr(o, "item"):
        return _clean(o.item())
    return str(o)


def _reward(smp: dict[str, Any], metric: str) -> float | None:
    v = smp.get(metric)
    if isinstance(v, dict):
        v = v.get("reward", v.get("score"))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _judge(smp: dict[str, Any]) -> dict[str, Any] | None:
    item = smp.get("winrate")
    if not isinstance(item, dict):
        return None
    return {k: item.get(k) for k in ("outcome", "score", "verdicts", "judge", "error") if item.get(k) is not None}


def _context(arguments: Any) -> str:
    """The request's context from a sample's ``arguments``: lm-eval 0.4 logs ``{"gen_args_0": {"arg_0": context,
    ...}}``, older versions a list of argument tuples; anything else shows as no text."""
    first = next(iter(arguments.values()), None) if isinstance(arguments, dict) and arguments else \
        arguments[0] if isinstance(arguments, list) and arguments else None
    if isinstance(first, dict):
        first = first.get("arg_0")
    elif isinstance(first, (list, tuple)) and first:
        first = first[0]
    return first if isinstance(first, str) else ""


def _doc_view(smp: dict[str, Any]) -> dict[str, Any]:
    doc = smp.get("doc") or {}
    out = {"prompt": doc["prompt"] if isinstance(doc.get("prompt"), str) else _context(smp.get("arguments"))}
    for k in ("chosen", "rejected", "id"):
        if isinstance(doc.get(k), str):
            out[k] = doc[k]
    return out


def _provenance(run: Run) -> dict[str, Any]:
    res = run.results
    cfg = dict(res.get("config") or {})
    ours = cfg.pop(FIELD, None) or {}
    ours.pop("templates", None)
    task_cfg = (res.get("configs") or {}).get(run.task) or {}
    date = res.get("date")
    when = datetime.datetime.fromtimestamp(date, datetime.timezone.utc).isoformat(timespec="seconds") \
        if isinstance(date, (int, float)) else None
    return {
        "model": run.model, "model_args": run.model_args,
        "config": {k: v for k, v in cfg.items() if k not in ("model", "model_args")},
        "task_settings": (ours.get("task_settings") or {}).get(run.task),
        "rm": (res.get("results") or {}).get(run.task, {}).get("rm,none"),
        "icdpo_eval": ours.get("version"), "code": res.get("git_hash"),
        "lm_eval": res.get("lm_eval_version"), "transformers": res.get("transformers_version"),
        "dataset": {k: task_cfg.get(k) for k in ("dataset_path", "dataset_name", "dataset_kwargs", "test_split")
                    if task_cfg.get(k) is not None},
        "task_version": (res.get("versions") or {}).get(run.task), "date": when,
    }


def page_data(runs: list[Run], table: list[dict[str, Any]], columns: list[str], title: str,
              notes: list[str]) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict (demos stored once, referenced by id)."""
    docs: dict[str, dict[str, dict[str, Any]]] = {}
    per_row: dict[str, dict[str, dict[str, Any]]] = {}
    demos: dict[str, dict[str, Any]] = {}
    templates: dict[str, dict[str, Any]] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for run in runs:
        tdocs = docs.setdefault(run.task, {})
        mine = per_row.setdefault(run.row, {}).setdefault(run.task, {})
        tpl = (((run.results.get("config") or {}).get(FIELD) or {}).get("templates") or {}).get(run.task)
        if tpl:
            templates.setdefault(run.row, {})[run.task] = tpl
        provenance.setdefault(run.row, _provenance(run))
        for smp in run.samples:
            did = str(smp.get("doc_id"))
            tdocs.setdefault(did, _doc_view(smp))
            resp = smp.get("filtered_resps") or smp.get("resps") or [""]
            while isinstance(resp, list) and resp:
                resp = resp[0]
            entry: dict[str, Any] = {"response": resp if isinstance(resp, str) else json.dumps(_clean(resp)),
                                     "reward": _reward(smp, run.metric)}
            length = smp.get("length")
            if isinstance(length, (int, float)):
                entry["length"] = length
            judge = _judge(smp)
            if judge:
                entry["judge"] = judge
            det = smp.get(FIELD)
            if isinstance(det, dict):
                ids = []
                for d in det.get("demos") or []:
                    key = str(d.get("id") or "")
                    if not key:
                        key = "h" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
                    demos.setdefault(key, d)
                    ids.append(key)
                entry["details"] = {"candidates": det.get("candidates"), "scores": det.get("scores"),
                                    "index": det.get("index"), "terms": det.get("terms") or {}, "demos": ids}
                if isinstance(det.get("internals"), dict):  # w2s's beams, ARGS's steps, URIAL's prefix
                    entry["internals"] = det["internals"]
                if isinstance(det.get("compute"), dict):  # what this document cost (models/compute.py)
                    entry["compute"] = {**{k: det["compute"].get(k) for k in
                                           ("forward_tokens", "generated_tokens", "seconds", "reused")},
                                        "resumed": bool(det.get("resumed"))}
            mine[did] = entry
    return _clean({"title": title, "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "warning": CONTENT_WARNING, "notes": notes, "columns": columns, "table": table,
        "rows": list(per_row), "tasks": list(docs), "docs": docs, "results": per_row, "demos": demos,
        "templates": templates, "provenance": provenance})


def _json_for_html(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render(data: dict[str, Any], chart_svg: str = "") -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("icdpo_eval.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True))
    svg = re.sub(r"<\?xml[^>]*>|<!DOCTYPE[^>]*>", "", chart_svg)  # matplotlib's own SVG, inline
    svg = re.sub(r"<script.*?</script>", "", svg, flags=re.S | re.I)
    return env.get_template("report.html.j2").render(
        title=data["title"], warning=data["warning"], notes=data["notes"], generated=data["generated"],
        chart=jinja2.utils.markupsafe.Markup(svg), data_json=jinja2.utils.markupsafe.Markup(_json_for_html(data)))


# ------------------------------------------------------------------------------------------ writing
def table_of(entries: list[Any]) -> list[dict[str, Any]]:
    """The leaderboard's entries (:class:`icdpo_eval.leaderboard.tables.Entry`) as the page's table rows."""
    return [{"row": e.row, "column": e.column, "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
             "length": e.length, "lc": e.lc, "lc_low": e.lc_low, "lc_high": e.lc_high, "p": e.p_value, "rm": e.rm,
             "guided": bool(getattr(e, "guided", False)),
             **{k: (getattr(e, "compute", None) or {}).get(k)
                for k in ("forward_tokens", "generated_tokens", "seconds")}}
            for e in entries]


def notes_of(runs: list[Run]) -> list[str]:
    """What a reader must know before reading a number off the page."""
    notes = []
    rms = {str((r.results.get("results") or {}).get(r.task, {}).get("rm,none") or "") for r in runs}
    if any(rm.startswith("proxy") for rm in rms):
        notes.append("Rewards are the offline PROXY reward model's (a MiniLM head), not the paper's RM: not "
                     "comparable with the paper's numbers.")
    if any("embedded" in json.dumps(r.model_args) or not r.model_args.get("pretrained") for r in runs):
        notes.append("Rows on the embedded 270M base model show the pipeline, not the method's effect: a model "
                     "this small follows in-context demonstrations weakly, so differences between rows here say "
                     "little about ICDPO at the paper's scale.")
    return notes


def write_page(runs: list[Run], entries: list[Any], columns: list[str], chart_svg: str, path: Path,
               title: str) -> Path:
    data = page_data(runs, table_of(entries), columns, title, notes_of(runs))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data, chart_svg), encoding="utf-8")
    return path
