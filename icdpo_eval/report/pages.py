"""``icdpo-eval report RESULTS... [--out FILE]``: the HTML page (:mod:`icdpo_eval.report.html`) of leaderboard folders
and/or ``lm_eval --output_path DIR --log_samples`` folders, with the leaderboard's own table, statistics and
chart; ``icdpo-eval leaderboard`` writes the same page as ``index.html`` beside its tables (docs/report.md)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from icdpo_eval import leaderboard as lb
from icdpo_eval.report import html


def report(paths: list[Path], out: Path) -> Path:
    """The page of leaderboard and/or lm-eval output folders."""
    runs, reference, title = html.load_runs(paths)
    tasks = list(dict.fromkeys(r.task for r in runs))
    rows = list(dict.fromkeys(r.row for r in runs))
    models = {r.row: r for r in runs}
    spec = lb.Spec(name=title, tasks=tasks, rows=[lb.Row(n, models[n].model, models[n].model_args) for n in rows],
                   metric=runs[0].metric, reference=reference if reference in rows else None)
    results: dict[tuple[str, str], lb.CellResult] = {}
    for r in runs:
        task_res = (r.results.get("results") or {}).get(r.task, {})
        cell = lb.Cell(r.row, r.model, r.model_args, r.task, None, 0, {}, {}, 1, r.metric)
        results[(r.row, r.task)] = lb.CellResult(
            cell, float(task_res.get(f"{r.metric},none", math.nan)), lb.per_doc_scores(r.samples, r.metric),
            str(task_res.get("rm,none", "")),
            bool((r.results.get("higher_is_better") or {}).get(r.task, {}).get(r.metric, True)),
            lengths=lb.doc_lengths(r.samples))
    if any((row, t) not in results for row in rows for t in tasks):  # rows that did not run every task
        spec.tasks = [t for t in tasks if all((row, t) in results for row in rows)] or tasks[:1]
        spec.rows = [row for row in spec.rows if all((row.name, t) in results for t in spec.tasks)]
    entries = lb.build_entries(spec, results)
    return lb.write_page(spec, entries, runs, out, title)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="one self-contained HTML page of leaderboard / lm-eval result folders",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="a leaderboard --out folder, or an `lm_eval --output_path DIR "
                   "--log_samples` folder (several: one page)")
    p.add_argument("--out", default=None, help="the HTML file (default: index.html in the first folder)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.results]
    out = Path(args.out) if args.out else (paths[0] if paths[0].is_dir() else paths[0].parent) / "index.html"
    path = report(paths, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB); open it in a browser (no server needed)")
    return 0
