"""``icdpo-eval leaderboard SPEC.yaml --out DIR``: many methods x tasks through lm-eval -> a table.

A spec (YAML) lists rows (a name, an lm-eval model name and model_args) and tasks; every
(row, task) cell runs in-process through :func:`icdpo_eval.evaluate` with ``--log_samples``, with
the spec's limit, seed and gen_kwargs. Each cell's lm-eval results JSON, samples and per-document
rewards are kept under ``DIR/cells/<key>/``, where ``key`` hashes the cell's full config (model,
model_args as written in the spec, task, limit, seed, gen_kwargs, env, batch size, package
version): finished cells are reused, a changed config reruns. Outputs: ``leaderboard.md`` (the
paper's layout: Harmless, Helpful, Total, SyntheticGPT), ``leaderboard.csv`` (one line per row x
column, with 95% bootstrap CIs and the Wilcoxon p-value against the reference row) and
``leaderboard.png`` (grouped bars with the CIs). Spec format: ``docs/leaderboard.md``.

A column that combines several tasks (Total = hh_harmless + hh_helpful) is the mean over ALL their
documents pooled, as the authors' released ``hh_eval_performance.py`` computes it (global reward
sum / global sample count), not the mean of the task means: with tasks of different sizes the two
differ. Its CI resamples the pooled per-document scores; its paired test pairs by (task, doc id).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icdpo_eval.config import settings
from icdpo_eval.leaderboard.adapters import prepare_adapters, with_adapters
from icdpo_eval.leaderboard.run import CellResult, cell_done, ensure_cell, write_documents
from icdpo_eval.leaderboard.spec import Cell, Spec, SpecError, cells_of, load_spec, parse_kv, validate_spec
from icdpo_eval.leaderboard.tables import Entry, build_entries, write_csv, write_md, write_page, write_png


def run_leaderboard(spec: Spec, out: Path, runner: Callable[[Cell], dict[str, Any]] | None = None,
                    rerun: bool = False, isolate: bool = False) -> list[Entry]:
    """Every cell (:mod:`icdpo_eval.leaderboard.cells`: grouped by the models they share, each loaded once, on one
    process or many), then the tables (rank 0). ``runner`` replaces lm-eval (tests)."""
    from icdpo_eval.leaderboard.cells import CellRunner, Processes, write_log

    procs = Processes()
    user_runner = runner
    out.mkdir(parents=True, exist_ok=True)
    # cells run with the adapters' folders; the tables keep the spec's own model_args ("trained:NAME")
    paths = prepare_adapters(spec) if procs.main else None
    procs.barrier()
    cells = largest_n_first(spec, cells_of(with_adapters(spec, procs.agree(paths))))

    def ensure(cell: Cell, run: bool, runner: Callable | None = None) -> CellResult | None:
        return ensure_cell(cell, out, user_runner or runner, rerun, run=run)

    t0 = time.time()
    engine = CellRunner(cells, ensure, isolate=isolate, procs=procs)
    got = engine.run(lambda c: cell_done(c, out) and not rerun)
    if not procs.main:
        return []
    results = {(c.row, c.task): got[(c.row, c.task)] for c in cells}  # the spec's order
    reused = sum(r.reused for r in results.values())
    print(f"cells: {len(results)} ({reused} reused, {len(results) - reused} run) in {out / 'cells'}; "
          f"{time.time() - t0:.1f} s", file=sys.stderr)
    write_log(engine.logs, out / "run.json")
    entries = build_entries(spec, results)
    write_documents(results, out)
    write_md(spec, entries, out / "leaderboard.md")
    write_csv(spec, entries, out / "leaderboard.csv")
    write_png(spec, entries, out / "leaderboard.png")
    from icdpo_eval.report import html

    names = {r.name for r in spec.rows}
    write_page(spec, entries, [r for r in html.runs_of_leaderboard(out)[0] if r.row in names and r.task in spec.tasks],
               out / "index.html", f"Leaderboard: {spec.name}")
    return entries


def largest_n_first(spec: Spec, cells: list[Cell]) -> list[Cell]:
    """The cells of a sweep over ``n`` in the order largest N first (each in the place of one of them): a document's
    draw of N candidates then holds every smaller N's (the candidate store serves the first N), so it is drawn
    once. The tables keep the spec's order."""
    rows = {r.name: r for r in spec.rows}
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cells):
        r = rows.get(c.row)
        if r is not None and r.sweep and r.sweep[0] == "n":
            groups.setdefault((r.group, c.task), []).append(i)
    out = list(cells)
    for idxs in groups.values():
        ordered = sorted((cells[i] for i in idxs), key=lambda c: -int(rows[c.row].sweep[1]))  # type: ignore[index]
        for i, c in zip(idxs, ordered, strict=True):
            out[i] = c
    return out


# ------------------------------------------------------------------------------------------ CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("leaderboard", help="run a spec of methods x tasks -> leaderboard md/csv/png",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="leaderboard spec YAML (e.g. leaderboards/mini.yaml)")
    p.add_argument("--out", default=None, help="output folder (default: leaderboard-<spec name>)")
    p.add_argument("--limit", type=float, default=None, help="override the spec's limit")
    p.add_argument("--rows", default=None, help="comma-separated subset of row names")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (override the spec's)")
    p.add_argument("--reference", default=None, help="reference row for the paired test")
    p.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help="set a spec variable used as ${VAR} (e.g. --set base=mistralai/Mistral-7B-v0.1)")
    p.add_argument("--rerun", action="store_true", help="rerun finished cells instead of reusing them")
    p.add_argument("--isolate", action="store_true", help="every cell loads its models afresh and samples every "
                   "candidate itself (the plain path; the tables are the same)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    # errors (SpecError, ...) are printed as one line by icdpo_eval.cli
    spec = load_spec(args.spec, parse_kv(",".join(args.set)))
    if args.limit is not None:
        spec.limit = int(args.limit) if args.limit >= 1 else args.limit
    if args.tasks:
        spec.tasks = args.tasks.split(",")
    if args.rows:
        wanted = args.rows.split(",")
        unknown = set(wanted) - {r.name for r in spec.rows}
        if unknown:
            raise SpecError(f"unknown rows: {', '.join(sorted(unknown))}")
        spec.rows = [r for r in spec.rows if r.name in wanted]
    if args.reference is not None:
        spec.reference = args.reference or None
    if spec.reference not in {r.name for r in spec.rows}:
        spec.reference = None
    validate_spec(spec, args.spec)  # every row and task, before the first cell runs
    out = Path(args.out or f"leaderboard-{spec.name}")
    run_leaderboard(spec, out, rerun=args.rerun, isolate=args.isolate)
    if settings.world_size() > 1 and not (out / "leaderboard.md").exists():
        return 0  # a rank > 0: rank 0 writes and prints the tables
    print((out / "leaderboard.md").read_text())
    print(f"wrote {out / 'leaderboard.md'}, {out / 'leaderboard.csv'}, {out / 'leaderboard.png'}, "
          f"{out / 'documents.jsonl'}, {out / 'index.html'} (the report: open it in a browser)")
    return 0
