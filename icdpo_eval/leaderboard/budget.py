"""``icdpo-eval compare-at-budget DIR``: each method's reward at one compute level, read off a finished (swept)
leaderboard, with a bootstrap CI.

A row swept over one option (``sweep:`` in the spec) is a curve: one point per value, at (mean compute per document,
mean reward). A method's reward at a budget B is read off its curve by linear interpolation in log(compute) between
the two points whose compute brackets B; a budget outside the curve's range is not extrapolated (the method is
reported as "outside its sweep"), and a row that is not swept is one point, read only at its own compute (within
``--match``). The CI resamples documents (paired: the same documents for every point of a curve and for the
reference row), recomputes every point's mean reward and compute on the resample and interpolates again at B; the
difference to the reference row (``--at ROW``, whose own mean compute is then B) is bootstrapped the same way.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdpo_eval.errors import UserError
from icdpo_eval.leaderboard.run import COMPUTE_FIELDS


class BudgetError(UserError):
    """A leaderboard folder compare-at-budget cannot read, or a budget it cannot place."""


@dataclass
class Point:
    row: str
    sweep_value: Any
    docs: dict[str, tuple[float, float]] = field(default_factory=dict)  # task/doc id -> (score, compute)

    def means(self, keys: list[str]) -> tuple[float, float]:
        pts = [self.docs[k] for k in keys]
        return sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)


def _cells(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    got = {}
    for marker in sorted((out / "cells").glob("*/cell.json")):
        d = json.loads(marker.read_text())
        got[(d["row"], d["config"]["task"])] = d
    return got


def load_curves(out: Path, column: str | None, measure: str) -> tuple[str, dict[str, list[Point]]]:
    """(the column used, group -> its points in the spec's order) from ``out/leaderboard.csv`` and its cells."""
    path = out / "leaderboard.csv"
    if not path.is_file():
        raise BudgetError(f"{path}: no such file; run `icdpo-eval leaderboard SPEC --out {out}` first")
    with open(path, newline="", encoding="utf-8") as fh:
        lines = list(csv.DictReader(fh))
    if not lines or "forward_tokens" not in lines[0]:
        raise BudgetError(f"{path}: no compute columns (a leaderboard written before compute was counted); rerun it "
                          "with --rerun")
    columns = list(dict.fromkeys(ln["column"] for ln in lines))
    column = column or columns[0]
    if column not in columns:
        raise BudgetError(f"--column {column!r}: not a column of {path} ({', '.join(columns)})")
    cells = _cells(out)
    curves: dict[str, list[Point]] = {}
    for ln in (x for x in lines if x["column"] == column):
        point = Point(ln["row"], ln.get("sweep_value") or None)
        for task in ln["task"].split("+"):
            d = cells.get((ln["row"], task))
            if d is None:
                raise BudgetError(f"{out / 'cells'}: no cell of row {ln['row']!r} / {task} (rerun the leaderboard)")
            comp = d.get("compute") or {}
            for doc, score in d["scores"].items():
                c = (comp.get(doc) or {}).get(measure)
                if c is not None:
                    point.docs[f"{task}/{doc}"] = (float(score), float(c))
        if not point.docs:
            continue  # a row without compute (e.g. an hf row run on many processes): nothing to place
        curves.setdefault(ln.get("group") or ln["row"], []).append(point)
    return column, curves


def interpolate(points: list[tuple[float, float]], budget: float, match: float) -> float | None:
    """The reward at ``budget`` on the curve through (compute, reward) ``points``: linear in log(compute) between the
    bracketing points; a single point only within ``match`` (relative) of its compute; None outside."""
    pts = sorted(points)
    if len(pts) == 1 or budget <= 0:
        c, r = pts[0]
        return r if c > 0 and abs(c - budget) <= match * c else None
    if budget < pts[0][0] * (1 - match) or budget > pts[-1][0] * (1 + match):
        return None
    budget = min(max(budget, pts[0][0]), pts[-1][0])
    for (c0, r0), (c1, r1) in zip(pts, pts[1:]):
        if c0 <= budget <= c1:
            if c1 <= c0 or c0 <= 0:
                return (r0 + r1) / 2
            t = (math.log(budget) - math.log(c0)) / (math.log(c1) - math.log(c0))
            return r0 + t * (r1 - r0)
    return None


def at_budget(curves: dict[str, list[Point]], budget: float | None, at: str | None, *, iters: int = 2000,
              seed: int = 1234, match: float = 0.05) -> dict[str, Any]:
    """Every group's reward at the budget (a number, or the mean compute of row ``at``), its bootstrap CI and, with
    ``at``, its difference to that row with a CI."""
    import numpy as np

    ref: Point | None = None
    if at is not None:
        ref = next((p for pts in curves.values() for p in pts if p.row == at), None)
        if ref is None:
            rows = [p.row for pts in curves.values() for p in pts]
            raise BudgetError(f"--at {at!r}: no row of that name with compute ({', '.join(rows)})")
    keys_all = sorted(ref.docs) if ref else None
    if budget is None:
        if ref is None:
            raise BudgetError("give --at ROW (its compute is the budget) or --budget X")
        budget = ref.means(keys_all)[1]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"budget": budget, "reference": at, "groups": []}
    ref_value = ref.means(keys_all)[0] if ref else None
    for group, pts in curves.items():
        keys = sorted(set.intersection(*(set(p.docs) for p in pts), *([set(ref.docs)] if ref else [])))
        if not keys:
            continue
        means = [p.means(keys) for p in pts]
        value = interpolate([(c, r) for r, c in means], budget, match)
        entry: dict[str, Any] = {"group": group, "rows": [p.row for p in pts], "n": len(keys),
                                 "compute": [round(c, 3) for _, c in means], "reward": [round(r, 4) for r, _ in means],
                                 "value": value, "ci": None, "diff": None, "diff_ci": None}
        if value is not None:
            draws, diffs = [], []
            idx = np.arange(len(keys))
            for _ in range(iters):
                sample = [keys[i] for i in rng.choice(idx, size=len(idx))]
                pm = [p.means(sample) for p in pts]
                v = interpolate([(c, r) for r, c in pm], budget, match)
                if v is None:
                    continue
                draws.append(v)
                if ref is not None:
                    diffs.append(v - ref.means(sample)[0])
            if draws:
                entry["ci"] = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
                entry["resamples"] = len(draws)
            if ref is not None and ref_value is not None:
                entry["diff"] = value - ref_value
                if diffs:
                    entry["diff_ci"] = [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]
        out["groups"].append(entry)
    return out


def markdown(res: dict[str, Any], column: str, measure: str) -> str:
    def f(x: float | None, nd: int = 2) -> str:
        return "–" if x is None else f"{x:.{nd}f}"

    what = f"the cost of **{res['reference']}**" if res["reference"] else "the budget"
    lines = [f"Reward at {what}: {res['budget']:.1f} {measure} per document ({column}); linear in log({measure}) "
             "between a curve's two bracketing points, never extrapolated; [95% bootstrap CI over documents]", "",
             "| method | points | " + measure + " range | reward at budget [95% CI] | − reference [95% CI] |",
             "|---|---:|---|---|---|"]
    for g in res["groups"]:
        lo, hi = min(g["compute"]), max(g["compute"])
        val = ("outside its sweep" if len(g["rows"]) > 1 else "not at this cost") if g["value"] is None else \
            f"{f(g['value'])} [{f((g['ci'] or [None])[0])}, {f((g['ci'] or [None, None])[1])}]"
        diff = "–" if g["diff"] is None else \
            f"{f(g['diff'])} [{f((g['diff_ci'] or [None])[0])}, {f((g['diff_ci'] or [None, None])[1])}]"
        lines.append(f"| {g['group']} | {len(g['rows'])} | {lo:.1f} – {hi:.1f} | {val} | {diff} |")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare-at-budget", help="each method's reward at one compute level, from a swept "
                              "leaderboard (bootstrap CI)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("leaderboard", help="a finished leaderboard folder (icdpo-eval leaderboard SPEC --out DIR)")
    p.add_argument("--at", default=None, help="the row whose mean compute per document is the budget (e.g. ICDPO)")
    p.add_argument("--budget", type=float, default=None, help="the budget itself, in --measure units per document")
    p.add_argument("--measure", default="forward_tokens", choices=list(COMPUTE_FIELDS),
                   help="what compute is (default: forward tokens per document, every model)")
    p.add_argument("--column", default=None, help="the leaderboard column (default: its first)")
    p.add_argument("--iters", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--match", type=float, default=0.05,
                   help="a row that is not swept counts at the budget within this relative distance (default 0.05)")
    p.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    if args.iters < 1:
        raise BudgetError(f"--iters {args.iters}: give at least 1")
    if args.budget is not None and args.budget <= 0:
        raise BudgetError(f"--budget {args.budget}: give a positive number of {args.measure} per document")
    column, curves = load_curves(Path(args.leaderboard), args.column, args.measure)
    if not curves:
        raise BudgetError(f"{args.leaderboard}: no row recorded {args.measure}")
    res = at_budget(curves, args.budget, args.at, iters=args.iters, match=args.match)
    res.update(column=column, measure=args.measure)
    print(json.dumps(res, indent=1) if args.json else markdown(res, column, args.measure))
    return 0
