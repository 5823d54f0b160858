"""The leaderboard's statistics and outputs: per-column entries (pooled means, bootstrap CIs, the paired test
against the reference row, length control) and the markdown, CSV, PNG and HTML tables.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icdpo_eval.leaderboard.run import CellResult
from icdpo_eval.leaderboard.spec import (
    GUIDED_MARK,
    GUIDED_NOTE,
    LABELS,
    TOTAL_TASK,
    Spec,
    guided_by_metric_rm,
    kv_string,
)
from icdpo_eval.stats import TIE, bootstrap_ci, paired_wilcoxon

CSV_FIELDS = ["row", "column", "task", "metric", "value", "ci_low", "ci_high", "n", "p_value", "reference",
              "higher_is_better", "rm", "model", "model_args", "limit", "seed", "gen_kwargs",
              "length", "lc_value", "lc_low", "lc_high", "guided_by_metric_rm",
              "generated_tokens", "forward_tokens", "forward_calls", "seconds", "rm_calls", "reused_forward_tokens",
              "group", "sweep_option", "sweep_value"]


# ---------------------------------------------------------------------------------- statistics
@dataclass
class Entry:
    row: str
    column: str
    task: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float  # nan for the reference itself / no reference
    rm: str
    higher_is_better: bool
    length: float = math.nan  # mean response length (tokens) over the column's documents
    lc: float = math.nan  # rm_reward_lc: the reference's value + the gain at zero length difference
    lc_low: float = math.nan
    lc_high: float = math.nan
    guided: bool = False  # an ARGS row guided by the RM that scores the table (spec.guided_by_metric_rm)
    # per document, mean over the column's documents (run.doc_compute: reused candidates at what they cost)
    compute: dict[str, float] | None = None


def mean_compute(cells: list[CellResult]) -> dict[str, float] | None:
    """Each compute field's mean over the documents of ``cells`` (None when a cell recorded none)."""
    from icdpo_eval.leaderboard.run import COMPUTE_FIELDS

    docs = [d for c in cells for d in c.compute.values()]
    if not docs or any(not c.compute for c in cells):
        return None
    keys = (*COMPUTE_FIELDS, "reused_forward_tokens")
    return {k: sum(d.get(k, 0.0) for d in docs) / len(docs) for k in keys}


def columns_of(spec: Spec) -> list[tuple[str, list[str]]]:
    """(label, tasks pooled) in the paper's order: Harmless, Helpful, Total, SyntheticGPT, others."""
    order = ["hh_harmless", "hh_helpful", TOTAL_TASK, "synthetic_gpt"]
    tasks = list(spec.tasks)
    if "hh_harmless" in tasks and "hh_helpful" in tasks:
        tasks.append(TOTAL_TASK)
    tasks.sort(key=lambda t: (order.index(t) if t in order else len(order), spec.tasks.index(t)
                              if t in spec.tasks else 0))
    labels = {**LABELS, **spec.columns}
    return [(labels.get(t, "Total" if t == TOTAL_TASK else t), t.split("+")) for t in tasks]


def pooled_value(cells: list[CellResult]) -> float:
    """A column's value: lm-eval's own value for one task; for several tasks the mean over all their
    documents pooled (sum of per-document scores / number of documents, the released
    ``hh_eval_performance.py``'s "Global Eval"), so a larger task weighs more than a smaller one.
    Falls back to the mean of the task values (with a warning) when a cell has no per-document scores."""
    if len(cells) == 1:
        return cells[0].value
    if all(c.scores for c in cells):
        pooled = [v for c in cells for v in c.scores.values()]
        return sum(pooled) / len(pooled)
    print(f"leaderboard: {'+'.join(c.cell.task for c in cells)} ({cells[0].cell.row}): no per-document "
          "scores in some cell; the column is the mean of the task values, not the pooled mean", file=sys.stderr)
    return sum(c.value for c in cells) / len(cells)


def length_controlled(spec: Spec, cells: list[CellResult],
                      ref: list[CellResult] | None) -> tuple[float, float, float]:
    """``rm_reward_lc`` of a column against the reference row (:func:`icdpo_eval.stats.lc_reward`,
    our extension): NaN without a reference, for non-reward metrics, or without per-document lengths."""
    if ref is None or spec.metric != "rm_reward":
        return math.nan, math.nan, math.nan
    from icdpo_eval.stats import lc_reward

    def paired(cs: list[CellResult]) -> dict[str, tuple[float, float]]:
        return {f"{c.cell.task}/{i}": (v, c.lengths[i]) for c in cs for i, v in c.scores.items() if i in c.lengths}

    a, b = paired(cells), paired(ref)
    ids = sorted(set(a) & set(b))
    if not ids:
        return math.nan, math.nan, math.nan
    est = lc_reward([a[i][0] for i in ids], [b[i][0] for i in ids], [a[i][1] for i in ids], [b[i][1] for i in ids],
                    scale=1.0)  # the scores are already x100
    return est.value, est.low, est.high


def build_entries(spec: Spec, results: dict[tuple[str, str], CellResult]) -> list[Entry]:
    entries = []
    for row in spec.rows:
        for label, tasks in columns_of(spec):
            cells = [results[(row.name, t)] for t in tasks]
            value = pooled_value(cells)
            lo, hi = bootstrap_ci([[v for c in cells for v in c.scores.values()]], seed=spec.seed)
            p = math.nan
            if spec.reference and spec.reference != row.name:
                ref = [results[(spec.reference, t)] for t in tasks]
                p, _ = paired_wilcoxon({f"{c.cell.task}/{i}": v for c in cells for i, v in c.scores.items()},
                                       {f"{c.cell.task}/{i}": v for c in ref for i, v in c.scores.items()},
                                       tie=100 * TIE)  # the scores are x100
            rm = ";".join(sorted({c.rm for c in cells if c.rm}))
            lengths = [v for c in cells for v in c.lengths.values()]
            lc = length_controlled(spec, cells, [results[(spec.reference, t)] for t in tasks]
                                   if spec.reference else None)
            entries.append(Entry(row.name, label, "+".join(tasks), value, lo, hi,
                                 sum(len(c.scores) for c in cells), p, rm, cells[0].higher_is_better,
                                 sum(lengths) / len(lengths) if lengths else math.nan, *lc,
                                 guided_by_metric_rm(spec, row), mean_compute(cells)))
    return entries


# ------------------------------------------------------------------------------------- outputs
def _fmt(x: float, nd: int = 2) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{nd}f}"


def write_md(spec: Spec, entries: list[Entry], path: Path) -> None:
    def label(row: Any) -> str:
        return row.name + (GUIDED_MARK if guided_by_metric_rm(spec, row) else "")

    cols = [c for c, _ in columns_of(spec)]
    by = {(e.row, e.column): e for e in entries}
    hib = all(e.higher_is_better for e in entries)
    what = "RM reward x100, higher is better" if spec.metric == "rm_reward" else \
        f"{'higher' if hib else 'lower'} is better"
    lines = [f"# Leaderboard: {spec.name}", "",
             f"{spec.metric} ({what}): mean over documents, "
             f"[95% bootstrap CI over documents]. limit={spec.limit}, seed={spec.seed}"
             + (f", gen_kwargs={kv_string(spec.gen_kwargs)}" if spec.gen_kwargs else "") + ".", "",
             "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in spec.rows:
        cells = [by[(row.name, c)] for c in cols]
        lines.append(f"| {label(row)} | " + " | ".join(
            f"{_fmt(e.value)} [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}]" for e in cells) + " |")
    if spec.reference:
        lines += ["", f"Paired Wilcoxon signed-rank test vs **{spec.reference}** (per-document values, "
                      "paired by doc id; two-sided p):", "",
                  "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for row in spec.rows:
            cells = [by[(row.name, c)] for c in cols]
            lines.append(f"| {label(row)} | " + " | ".join(
                "ref" if row.name == spec.reference else _fmt(e.p_value, 3) for e in cells) + " |")
    lines += ["", "Mean response length (tokens of the embedded Gemma-3 tokenizer, the same for every model; for a "
                  "`*_pairs` task the length difference chosen − rejected; docs/length.md):", "",
              "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in spec.rows:
        lines.append(f"| {label(row)} | " + " | ".join(_fmt(by[(row.name, c)].length, 1) for c in cols) + " |")
    if spec.reference and spec.metric == "rm_reward":
        lines += ["", f"rm_reward_lc: the reward at zero length difference to **{spec.reference}** (per-document "
                      "reward difference regressed on length difference, reference + intercept, [95% CI]; our "
                      "extension, not the paper's metric; docs/length.md):", "",
                  "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for row in spec.rows:
            lines.append(f"| {label(row)} | " + " | ".join(
                "ref" if row.name == spec.reference else
                f"{_fmt(e.lc)} [{_fmt(e.lc_low)}, {_fmt(e.lc_high)}]" for e in (by[(row.name, c)] for c in cols))
                + " |")
    if any(e.compute for e in entries):
        lines += ["", "Compute per document (mean over the column's documents: tokens drawn, forward-pass positions "
                      "over every model the method runs, padding included, and seconds generating; candidates served "
                      "from the candidate store count at what drawing them cost; docs/compute.md):", "",
                  "| Method | " + " | ".join(f"{c}: generated | forward | s" for c in cols) + " |",
                  "|---|" + "---:|---:|---:|" * len(cols)]
        for row in spec.rows:
            cells = []
            for c in cols:
                comp = by[(row.name, c)].compute
                cells.append(" | ".join(["–"] * 3) if comp is None else
                             f"{comp['generated_tokens']:.0f} | {comp['forward_tokens']:.0f} | {comp['seconds']:.2f}")
            lines.append(f"| {label(row)} | " + " | ".join(cells) + " |")
    rms = sorted({e.rm for e in entries if e.rm})
    if any(e.guided for e in entries):
        lines += ["", GUIDED_NOTE]
    lines += ["", f"Reward model: {', '.join(rms) or 'n/a'}"
              + (" (offline proxy: not comparable with the paper's numbers)"
                 if any(r.startswith("proxy") for r in rms) else "") + ".", ""]
    path.write_text("\n".join(lines))


def write_csv(spec: Spec, entries: list[Entry], path: Path) -> None:
    rows = {r.name: r for r in spec.rows}
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for e in entries:
            r = rows[e.row]
            w.writerow({"row": e.row, "column": e.column, "task": e.task, "metric": spec.metric,
                        "value": f"{e.value:.6f}", "ci_low": f"{e.ci_low:.6f}", "ci_high": f"{e.ci_high:.6f}",
                        "n": e.n, "p_value": "" if math.isnan(e.p_value) else f"{e.p_value:.6g}",
                        "reference": spec.reference or "", "higher_is_better": e.higher_is_better,
                        "rm": e.rm, "model": r.model, "model_args": kv_string(r.model_args),
                        "limit": spec.limit, "seed": spec.seed, "gen_kwargs": kv_string(spec.gen_kwargs),
                        "length": "" if math.isnan(e.length) else f"{e.length:.3f}",
                        **{k: "" if math.isnan(v) else f"{v:.6f}"
                           for k, v in (("lc_value", e.lc), ("lc_low", e.lc_low), ("lc_high", e.lc_high))},
                        "guided_by_metric_rm": e.guided,
                        **{k: "" if e.compute is None else f"{e.compute[k]:.{3 if k == 'seconds' else 1}f}"
                           for k in ("generated_tokens", "forward_tokens", "forward_calls", "seconds", "rm_calls",
                                     "reused_forward_tokens")},
                        "group": r.group or "", "sweep_option": r.sweep[0] if r.sweep else "",
                        "sweep_value": r.sweep[1] if r.sweep else ""})


def write_png(spec: Spec, entries: list[Entry], path: Any, fmt: str = "png") -> None:
    """The chart (a file path, or a binary file object with ``fmt``: the report inlines it as ``svg``): the bars with
    their CIs on top, reward against length and reward against compute (forward tokens per document, log axis)
    below, one point per row and column, a swept row's points joined as one curve (its SVG element's id is
    ``curve-<group>``). Titles are wrapped to their panel and the layout is constrained, so nothing is cut."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [c for c, _ in columns_of(spec)]
    by = {(e.row, e.column): e for e in entries}
    n_rows = len(spec.rows)
    width = 0.8 / n_rows
    bars_w = max(10.0, 1.5 + len(cols) * n_rows * 0.45)
    legend_rows = math.ceil(n_rows / 4)
    fig, axes = plt.subplot_mosaic([["bars", "bars"], ["len", "compute"]],
                                   figsize=(bars_w, 9.0 + 0.22 * legend_rows), layout="constrained")
    ax, ax_len, ax_comp = axes["bars"], axes["len"], axes["compute"]

    def title(a: Any, text: str, fig_w: float) -> None:
        a.set_title("\n".join(textwrap.wrap(text, max(24, int(fig_w * 7)))), fontsize="medium")

    x = np.arange(len(cols))
    for i, row in enumerate(spec.rows):
        es = [by[(row.name, c)] for c in cols]
        vals = np.array([e.value for e in es])
        err = np.array([[e.value - e.ci_low if not math.isnan(e.ci_low) else 0.0 for e in es],
                        [e.ci_high - e.value if not math.isnan(e.ci_high) else 0.0 for e in es]])
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, yerr=err, capsize=3, label=row.name, color=f"C{i % 10}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, cols)
    ylabel = f"{spec.metric} (x100)" if spec.metric == "rm_reward" else spec.metric
    ax.set_ylabel(ylabel)
    title(ax, f"{spec.name}: mean with 95% bootstrap CI (n per cell: limit={spec.limit})", bars_w)
    # the rows' legend under every panel, across the figure's width (constrained layout keeps it inside)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=min(4, n_rows), fontsize="small")
    markers = "osD^v<>pP*X"
    half = bars_w / 2
    # reward against mean response length: how much of a row's standing goes with length
    for i, row in enumerate(spec.rows):
        es = [by[(row.name, c)] for c in cols]
        ax_len.scatter([e.length for e in es], [e.value for e in es], marker=markers[i % len(markers)],
                       label=row.name, color=f"C{i % 10}")
    ax_len.set_xlabel("mean length (tokens)")
    ax_len.set_ylabel(ylabel)
    title(ax_len, f"{spec.metric} vs length (one point per row and column; *_pairs: chosen − rejected)", half)
    # reward against compute: a swept row is one curve through its values, every other row a point
    drawn = False
    groups: dict[str, list[Any]] = {}
    for row in spec.rows:
        groups.setdefault(row.group or row.name, []).append(row)
    for gi, (group, rows) in enumerate(groups.items()):
        for c in cols:
            pts = [(by[(r.name, c)].compute["forward_tokens"], by[(r.name, c)].value, r) for r in rows
                   if by[(r.name, c)].compute and by[(r.name, c)].compute["forward_tokens"] > 0]
            if not pts:
                continue
            drawn = True
            pts.sort(key=lambda t: t[0])
            label = group + (f" ({c})" if len(cols) > 1 else "")
            color, marker = f"C{gi % 10}", markers[gi % len(markers)]
            if len(rows) > 1:
                (line,) = ax_comp.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                                       label=label)
                line.set_gid(f"curve-{group}" + (f"-{c}" if len(cols) > 1 else ""))
                for fx, fy, r in pts:
                    ax_comp.annotate(str(r.sweep[1]) if r.sweep else "", (fx, fy), textcoords="offset points",
                                     xytext=(4, 4), fontsize="x-small", color=color)
            else:
                ax_comp.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=label)
    if drawn:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax_comp.set_xscale("log")
        ax_comp.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax_comp.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax_comp.xaxis.set_minor_formatter(NullFormatter())
        ax_comp.legend(fontsize="x-small", loc="best")
    else:
        ax_comp.text(0.5, 0.5, "no compute recorded", ha="center", va="center", transform=ax_comp.transAxes)
    ax_comp.set_xlabel("forward tokens per document (log)")
    ax_comp.set_ylabel(ylabel)
    title(ax_comp, f"{spec.metric} vs compute (a swept row is a curve, labelled by its values)", half)
    fig.savefig(path, dpi=110, format=fmt)
    plt.close(fig)


def write_page(spec: Spec, entries: list[Entry], runs: list[Any], path: Path, title: str) -> Path:
    """The HTML report of these entries and runs (:mod:`icdpo_eval.report.html`), with this chart inlined as SVG."""
    from icdpo_eval.report import html

    chart = io.BytesIO()
    write_png(spec, entries, chart, fmt="svg")
    return html.write_page(runs, entries, [c for c, _ in columns_of(spec)], chart.getvalue().decode("utf-8"),
                           path, title)




def without_seconds(path: Path) -> str:
    """A table file's text without its wall-clock seconds (the CSV's ``seconds`` column, the last cell of each row of
    the markdown's compute table): what two runs of the same spec must agree on byte for byte (every count included)
    whatever the machine's load (one process vs many, the plain path vs the shared one)."""
    import json
    import re

    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rows], ensure_ascii=False)
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".md" or "Compute per document" not in text:
        return text
    head, sep, rest = text.partition("Compute per document")
    para, blank, tail = rest.partition("\n\n|")  # the heading's paragraph, then the table
    body, end, after = tail.partition("\n\n")
    return head + sep + para + blank + re.sub(r"\| [0-9.]+ \|$", "| s |", body, flags=re.M) + end + after
