"""``icdpo-eval compare NEW BASELINE [--tolerance X] [--ci]``: a regression gate on metric tables.

NEW and BASELINE are each an lm-eval results JSON, a folder (searched recursively for
``results_*.json``; a folder holding ``leaderboard.csv`` means that CSV) or a leaderboard CSV.
Cells are aligned on (model, task, metric): for results JSON the model is ``config.model`` plus
its canonical ``model_args``; for a leaderboard CSV it is the row name. The direction of each
metric comes from lm-eval's ``higher_is_better`` (JSON) or the CSV's ``higher_is_better`` column.

Exit 0: nothing got worse beyond the tolerance (absolute, in the metric's units).
Exit 1: some metric dropped by more than ``--tolerance``; with ``--ci``, NEW fell outside
BASELINE's 95% CI (below ``ci_low`` for higher-is-better) by more than the tolerance (cells with
no CI fall back to the tolerance check); or a BASELINE cell is missing in NEW.
Exit 2: unreadable input, mixed formats, or the same cell run under a different config (limit,
seed, gen_kwargs, reward model, model/model_args of a CSV row): the keys that differ are named.

``--paired BASE_DOCS`` (with ``--ci``; NEW a leaderboard folder): also a one-sided paired Wilcoxon
signed-rank test per cell over the documents both runs scored (NEW's ``documents.jsonl`` vs
BASE_DOCS); a cell fails when its drop is significant (p < ``--alpha``, default 0.05) and larger than
the tolerance, even inside the CI. Per-document differences within ``--atol`` (the exactness gate's
reward tolerance, default 1e-6 raw) are float noise: ties, never a drop. Every report lists each
cell's *minimum detectable drop* (MDD): the drop a two-sided test at α=0.05 detects with 80% power
given the baseline's standard error (``(1.96 + 0.84) x SE``, SE from the 95% CI:
``(ci_high - ci_low) / (2 x 1.96)``). A drop smaller than the MDD usually passes: a table whose MDD
is tens of points cannot gate small regressions.

``--exact`` (NEW a leaderboard folder, BASELINE a ``documents.jsonl``): the exactness gate of
:mod:`icdpo_eval.gates.exact` instead (responses byte for byte, rewards to ``--atol``). Which gate when:
``docs/leaderboard.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdpo_eval import stats
from icdpo_eval.errors import UserError

LOWER_IS_BETTER = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "nll", "loss",
                   "ter", "wer"}
CSV_CONFIG = ["model", "model_args", "limit", "seed", "gen_kwargs", "rm"]
Key = tuple[str, str, str]  # (model, task, metric)


class CompareError(UserError):
    """Bad input: exit code 2."""


@dataclass
class Cell:
    value: float
    higher_is_better: bool
    ci_low: float | None = None
    ci_high: float | None = None
    config: dict[str, str] = field(default_factory=dict)


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v


def canonical_args(args: Any) -> str:
    if isinstance(args, dict):
        items = args.items()
    else:
        items = (p.partition("=")[::2] for p in str(args or "").split(",") if p.strip())
    return ",".join(f"{k.strip()}={str(v).strip()}" for k, v in sorted(items))


def default_direction(metric: str) -> bool:
    return metric.split(",")[0] not in LOWER_IS_BETTER


def _object(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise CompareError(f"{path}: not an lm-eval results JSON (`{key}` is a {type(value).__name__}, not an object)")
    return value


def load_results_json(path: Path, table: dict[Key, Cell]) -> None:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: JSON or UTF-8
        raise CompareError(f"{path}: not an lm-eval results JSON ({e.__class__.__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise CompareError(f"{path}: not an lm-eval results JSON (needs a `results` object of task -> metrics)")
    results, config = data["results"], _object(data, "config", path)
    n_shot, hib_all = _object(data, "n-shot", path), _object(data, "higher_is_better", path)
    bad = next((t for t, m in results.items() if not isinstance(m, dict)), None)
    if bad is not None or any(not isinstance(v, dict) for v in hib_all.values() if v):
        what = f"results[{bad!r}]" if bad is not None else "a `higher_is_better` entry"
        raise CompareError(f"{path}: not an lm-eval results JSON ({what} is not an object of metric -> value)")
    model = f"{config.get('model', '?')}({canonical_args(config.get('model_args'))})"
    base_cfg = {k: json.dumps(config.get(k), sort_keys=True) for k in
                ("limit", "random_seed", "numpy_seed", "torch_seed", "fewshot_seed", "gen_kwargs")}
    for task, metrics in results.items():
        cfg = dict(base_cfg)
        if n_shot.get(task) is not None:
            cfg["num_fewshot"] = str(n_shot[task])
        strings = {k.split(",")[0]: v for k, v in metrics.items() if isinstance(v, str) and "," in k}
        if "rm" in strings:
            cfg["rm"] = strings["rm"]
        hib = hib_all.get(task) or {}
        for k, v in metrics.items():
            value = _float(v)
            if "," not in k or "_stderr" in k or isinstance(v, (bool, str)) or value is None:
                continue
            name, _, filt = k.partition(",")
            metric = name if filt in ("", "none") else k
            se = _float(metrics.get(f"{name}_stderr,{filt}"))
            ci = (value - 1.96 * se, value + 1.96 * se) if se is not None and se > 0 else (None, None)
            table[(model, task, metric)] = Cell(value, bool(hib.get(name, default_direction(name))),
                                                ci[0], ci[1], cfg)


def load_csv(path: Path, table: dict[Key, Cell]) -> None:
    rows: list[tuple[int, dict[str, Any]]] = []
    reader: Any = None
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for r in reader:
                rows.append((reader.line_num, r))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        where = f"{path}:{reader.line_num}" if isinstance(e, csv.Error) and reader is not None else str(path)
        raise CompareError(f"{where}: cannot read CSV ({e.__class__.__name__}: {e}); write it as UTF-8 CSV with a "
                           "header line, as `icdpo-eval leaderboard` does") from None
    if not rows or "row" not in rows[0][1] or "value" not in rows[0][1]:
        raise CompareError(f"{path}: not a leaderboard CSV (needs at least `row` and `value` columns)")
    for line, r in rows:
        if r["row"] is None or r["value"] is None:
            raise CompareError(f"{path}:{line}: fewer fields than the header (no `row` or `value`); "
                               "every line needs a value for each column")
        metric = r.get("metric") or "rm_reward"
        task = r.get("task") or r.get("column") or ""
        value = _float(r["value"])
        if value is None:
            continue  # a non-numeric metric
        hib_s = (r.get("higher_is_better") or "").strip().lower()
        hib = hib_s in ("true", "1", "yes") if hib_s else default_direction(metric)
        lo, hi = _float(r.get("ci_low")), _float(r.get("ci_high"))
        lo = None if lo is None or math.isnan(lo) else lo
        hi = None if hi is None or math.isnan(hi) else hi
        cfg = {k: r[k] for k in CSV_CONFIG if r.get(k) not in (None, "")}
        table[(r["row"], task, metric)] = Cell(value, hib, lo, hi, cfg)


def load(path_s: str) -> tuple[str, dict[Key, Cell]]:
    """-> (format, table): format is ``"json"`` or ``"csv"``."""
    path = Path(path_s)
    table: dict[Key, Cell] = {}
    if path.is_dir():
        if (path / "leaderboard.csv").is_file():
            load_csv(path / "leaderboard.csv", table)
            return "csv", table
        files = sorted(path.rglob("results_*.json"), key=lambda p: (p.stat().st_mtime, str(p)))
        if not files:
            raise CompareError(f"{path}: no results_*.json (nor leaderboard.csv) in this folder")
        for f in files:  # later runs of the same cell override earlier ones
            load_results_json(f, table)
        return "json", table
    if not path.is_file():
        raise CompareError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".csv":
        load_csv(path, table)
        return "csv", table
    load_results_json(path, table)
    return "json", table


def config_mismatches(new: dict[Key, Cell], base: dict[Key, Cell]) -> list[str]:
    out: dict[tuple[str, str], str] = {}
    for key in sorted(set(new) & set(base)):
        a, b = new[key].config, base[key].config
        diff = [f"{k}: {a.get(k, '<absent>')} (new) vs {b.get(k, '<absent>')} (baseline)"
                for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if diff:
            out.setdefault((key[0], key[1]), f"{key[0]} on {key[1]}: " + "; ".join(diff))
    return list(out.values())


def _f(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.4g}"


def minimum_detectable_drop(cell: Cell) -> float | None:
    """The baseline cell's minimum detectable drop (:func:`icdpo_eval.stats.minimum_detectable_drop`)."""
    return stats.minimum_detectable_drop(cell.ci_low, cell.ci_high)


PairedDocs = dict[tuple[str, str], dict[str, float]]  # (row, task) -> doc id -> value on the table's scale


PAIRED_SCALE = 100.0  # the tables report reward x 100


def paired_docs(docs: dict[tuple[str, str, str], dict[str, Any]], scale: float = PAIRED_SCALE) -> PairedDocs:
    """Per-document rewards of a ``documents.jsonl`` (x ``scale``: the tables report reward x 100)."""
    out: PairedDocs = {}
    for (row, task, doc), d in docs.items():
        if d.get("reward") is not None:
            out.setdefault((row, task), {})[doc] = scale * float(d["reward"])
    return out


def paired_drop_p(new: dict[str, float], base: dict[str, float], higher_is_better: bool,
                  tie: float = 0.0) -> tuple[float, int]:
    """One-sided paired Wilcoxon signed-rank p-value that NEW is worse than BASE over their common documents, and
    the number paired (:func:`icdpo_eval.stats.paired_wilcoxon`; differences within ``tie`` are ties)."""
    if higher_is_better:
        return stats.paired_wilcoxon(new, base, tie=tie, alternative="less")
    return stats.paired_wilcoxon(base, new, tie=tie, alternative="less")


def compare(new: dict[Key, Cell], base: dict[Key, Cell], tolerance: float = 0.0,
            use_ci: bool = False, paired: tuple[PairedDocs, PairedDocs] | None = None,
            alpha: float = 0.05, tie: float = 0.0) -> tuple[int, str]:
    """-> (exit code 0/1, markdown report). Raises CompareError on mismatched configs. ``paired`` =
    (NEW's, BASELINE's) per-document values: adds the paired test of the module docstring, where
    per-document differences within ``tie`` count as ties and a mean drop within it never fails."""
    bad = config_mismatches(new, base)
    if bad:
        raise CompareError("the same cells were run under different configs; not comparable:\n  "
                           + "\n  ".join(bad))
    lines = ["| model | task | metric | baseline | new | Δ | allowed | MDD | paired p | status |",
             "|---|---|---|---:|---:|---:|---|---:|---:|---|"]
    failures: list[str] = []
    for key in sorted(set(base) | set(new)):
        model, task, metric = key
        b, n = base.get(key), new.get(key)
        if b is None and n is not None:
            lines.append(f"| {model} | {task} | {metric} | – | {_f(n.value)} | – | – | – | – | new (not in baseline) |")
            continue
        assert b is not None
        mdd = minimum_detectable_drop(b)
        if n is None:
            lines.append(f"| {model} | {task} | {metric} | {_f(b.value)} | – | – | – | {_f(mdd)} | – | **MISSING** |")
            failures.append(f"{model} / {task} / {metric}: in BASELINE but missing in NEW")
            continue
        sign = 1.0 if b.higher_is_better else -1.0
        delta = n.value - b.value
        eps = 1e-9 * max(1.0, abs(b.value))
        bound = b.ci_low if b.higher_is_better else b.ci_high
        if use_ci and bound is not None:
            floor = bound - sign * tolerance
            ok = sign * (n.value - floor) >= -eps
            allowed = f"{'≥' if sign > 0 else '≤'} {_f(floor)} (CI)"
        else:
            floor = b.value - sign * tolerance
            ok = sign * (n.value - floor) >= -eps
            allowed = f"{'≥' if sign > 0 else '≤'} {_f(floor)}"
        if math.isnan(n.value) and not math.isnan(b.value):
            ok = False
        p_value, n_paired = math.nan, 0
        if paired is not None and (model, task) in paired[1]:
            p_value, n_paired = paired_drop_p(paired[0].get((model, task), {}), paired[1][(model, task)],
                                              b.higher_is_better, tie)
            if p_value < alpha and -sign * delta > max(tolerance, tie):
                ok = False
                allowed += f"; paired p ≥ {alpha:g}"
        status = "ok" if ok and abs(delta) <= eps else ("better" if ok and sign * delta > 0 else
                                                        ("ok (within)" if ok else "**WORSE**"))
        lines.append(f"| {model} | {task} | {metric} | {_f(b.value)} | {_f(n.value)} | {delta:+.4g} | "
                     f"{allowed} | {_f(mdd)} | {_f(p_value)} | {status} |")
        if not ok:
            why = f", paired Wilcoxon p={p_value:.3g} over {n_paired} documents" if n_paired else ""
            failures.append(f"{model} / {task} / {metric}: {_f(n.value)} vs baseline {_f(b.value)} "
                            f"(allowed {allowed}{why}, {'higher' if sign > 0 else 'lower'} is better)")
    mdds = [m for m in (minimum_detectable_drop(c) for c in base.values()) if m is not None]
    if mdds:
        lines += ["", f"Minimum detectable drop (80% power, α=0.05, from the baseline's CIs): "
                      f"{_f(min(mdds))} to {_f(max(mdds))} in the metric's units; smaller drops usually pass "
                      "this gate (use more documents, or the exactness gate for our own code)."]
    if failures:
        lines += ["", f"FAIL: {len(failures)} regression(s):", *[f"- {f}" for f in failures]]
    else:
        lines += ["", f"OK: {len(base)} baseline cell(s), none worse beyond "
                      f"{'the 95% CI' if use_ci else 'the tolerance'} (tolerance {tolerance:g})."]
    return (1 if failures else 0), "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compare", help="diff NEW results against a BASELINE; exit 1 on regression",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("new", help="lm-eval results JSON, a folder of them, or a leaderboard CSV")
    p.add_argument("baseline", help="same kinds as NEW")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="allowed drop, absolute in the metric's units (default 0)")
    p.add_argument("--ci", action="store_true",
                   help="fail only when NEW falls outside BASELINE's 95%% CI (minus the tolerance)")
    p.add_argument("--paired", metavar="BASE_DOCS", default=None,
                   help="with --ci: also fail on a significant paired per-document drop vs this documents.jsonl "
                   "(NEW must be a leaderboard folder)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of --paired (default 0.05)")
    p.add_argument("--exact", action="store_true",
                   help="exactness gate: NEW's documents.jsonl vs BASELINE (a documents.jsonl), responses byte "
                   "for byte and rewards to --atol")
    p.add_argument("--atol", type=float, default=1e-6,
                   help="reward tolerance (raw reward units, default 1e-6): of --exact per document; of --paired, "
                   "the per-document difference below which two rewards tie (float noise, not a drop)")
    p.add_argument("--rtol", type=float, default=None,
                   help="--exact: relative tolerance of candidate scores and scorer terms, on top of --atol "
                   "(default 1e-5: float32 sums of log-probs move in their last bits with a machine's decode kernels)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from icdpo_eval.gates.exact import RTOL, GateError, compare_documents, load_documents

    if args.exact:
        try:
            code, report = compare_documents(load_documents(args.new), load_documents(args.baseline), args.atol,
                                             RTOL if args.rtol is None else args.rtol)
        except GateError as e:
            print(f"icdpo-eval compare: error: {e}", file=sys.stderr)
            return 2
        print(report)
        return code
    try:
        paired = None
        if args.paired:
            if not args.ci:
                raise CompareError("--paired needs --ci")
            paired = (paired_docs(load_documents(args.new), PAIRED_SCALE),
                      paired_docs(load_documents(args.paired), PAIRED_SCALE))
        fmt_new, new = load(args.new)
        fmt_base, base = load(args.baseline)
        if fmt_new != fmt_base:
            raise CompareError(f"NEW is {'a leaderboard CSV' if fmt_new == 'csv' else 'lm-eval results'} "
                               f"but BASELINE is {'a leaderboard CSV' if fmt_base == 'csv' else 'lm-eval results'}"
                               "; compare like with like")
        if not base:
            raise CompareError(f"{args.baseline}: no numeric metrics found")
        code, report = compare(new, base, args.tolerance, args.ci, paired, args.alpha, args.atol * PAIRED_SCALE)
    except (CompareError, GateError) as e:
        print(f"icdpo-eval compare: error: {e}", file=sys.stderr)
        return 2
    print(report)
    return code
