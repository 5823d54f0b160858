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
import csv
import hashlib
import io
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdpo_eval import settings
from icdpo_eval.errors import UserError
from icdpo_eval.runtime import atomic_write
from icdpo_eval.stats import TIE, bootstrap_ci, paired_wilcoxon

LABELS = {"hh_harmless": "Harmless", "hh_helpful": "Helpful", "synthetic_gpt": "SyntheticGPT",
          "hh_harmless_mini": "Harmless (mini)"}
TOTAL_TASK = "hh_harmless+hh_helpful"  # the paper's "Total": mean over both tasks' documents pooled
CSV_FIELDS = ["row", "column", "task", "metric", "value", "ci_low", "ci_high", "n", "p_value", "reference",
              "higher_is_better", "rm", "model", "model_args", "limit", "seed", "gen_kwargs",
              "length", "lc_value", "lc_low", "lc_high"]


class SpecError(UserError):
    """A malformed leaderboard spec."""


# ----------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class Row:
    name: str
    model: str
    model_args: dict[str, Any]


@dataclass
class Spec:
    name: str
    tasks: list[str]
    rows: list[Row]
    limit: int | float | None = None
    seed: int = 1234
    gen_kwargs: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # task settings (rm, judge_model, ...), as --metadata
    batch_size: int = 1
    device: str = "auto"
    metric: str = "rm_reward"
    reference: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> TrainArgs fields (+ method)


@dataclass(frozen=True)
class Cell:
    row: str
    model: str
    model_args: dict[str, Any]
    task: str
    limit: int | float | None
    seed: int
    gen_kwargs: dict[str, Any]
    metadata: dict[str, Any]
    batch_size: int
    metric: str
    device: str = "auto"

    def config(self) -> dict[str, Any]:
        from icdpo_eval import __version__

        return {"model": self.model, "model_args": self.model_args, "task": self.task, "limit": self.limit,
                "seed": self.seed, "gen_kwargs": self.gen_kwargs, "metadata": self.metadata,
                "batch_size": self.batch_size, "device": self.device, "metric": self.metric,
                "icdpo_eval": __version__}

    def key(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_kv(text: str | dict[str, Any] | None) -> dict[str, Any]:
    """``"a=1,b=x"`` (lm-eval's own ``simple_parse_args_string``) or a mapping -> dict."""
    if not text:
        return {}
    if isinstance(text, dict):
        return dict(text)
    from lm_eval.utils import simple_parse_args_string

    try:
        return simple_parse_args_string(str(text))
    except ValueError:
        raise SpecError(f"expected key=value,... got {text!r}") from None


def kv_string(args: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(args.items()))


def _substitute(obj: Any, variables: dict[str, str]) -> Any:
    if isinstance(obj, str):
        def repl(m: re.Match[str]) -> str:
            if m.group(1) not in variables:
                raise SpecError(f"unknown variable ${{{m.group(1)}}} (define it under vars: or --set)")
            return str(variables[m.group(1)])
        return re.sub(r"\$\{(\w+)\}", repl, obj)
    if isinstance(obj, dict):
        return {k: _substitute(v, variables) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, variables) for v in obj]
    return obj


def _read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{path}: no such spec file; give a leaderboard YAML (e.g. leaderboards/mini.yaml)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise SpecError(f"{where}: not valid YAML ({e.problem or e}); fix the spec") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: not valid YAML ({' '.join(str(e).split())}); fix the spec") from None
    if not isinstance(raw, dict) or not raw.get("rows") or not raw.get("tasks"):
        raise SpecError(f"{path}: a spec needs `tasks:` and `rows:` (see leaderboards/mini.yaml)")
    return raw


def _typed(path: str | Path, raw: dict[str, Any], key: str, conv: Callable[[Any], Any], what: str,
           default: Any = None) -> Any:
    """``conv(raw[key])`` or ``default``; a value of the wrong kind is a SpecError naming the key."""
    value = raw.get(key)
    if value is None:
        return default
    try:
        return conv(value)
    except (TypeError, ValueError, AttributeError):
        raise SpecError(f"{path}: `{key}: {value!r}` must be {what}") from None


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError
    return {str(k): v for k, v in value.items()}


def _limit(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError
    return int(value) if value >= 1 else float(value)


def load_spec(path: str | Path, overrides: dict[str, str] | None = None) -> Spec:
    """Parse and check a spec file (shape and types; :func:`validate_spec` checks names against lm-eval)."""
    raw = _read_yaml(path)
    if "env" in raw:
        raise SpecError(f"{path}: `env:` is no longer read (environment variables are for secrets and paths only); "
                        "put task settings such as the reward model under `metadata:` (e.g. metadata: {rm: proxy})")
    variables = {str(k): str(v) for k, v in _typed(path, raw, "vars", _mapping, "a mapping", {}).items()}
    variables.update(overrides or {})
    raw = _substitute({k: v for k, v in raw.items() if k != "vars"}, variables)
    defaults = _typed(path, raw, "model_defaults", _mapping, "a mapping of model name to model_args", {})
    if not isinstance(raw["rows"], list):
        raise SpecError(f"{path}: `rows:` must be a list of {{name, model, model_args}}")
    rows, seen = [], set()
    for i, r in enumerate(raw["rows"]):
        if not isinstance(r, dict) or "name" not in r or "model" not in r:
            raise SpecError(f"{path}: row {i + 1}: every row needs `name` and `model`, got {r!r}")
        name = str(r["name"])
        if name in seen:
            raise SpecError(f"{path}: duplicate row name {name!r}")
        seen.add(name)
        try:
            args = {**parse_kv(defaults.get(str(r["model"]))), **parse_kv(r.get("model_args"))}
        except SpecError as e:
            raise SpecError(f"{path}: row {name!r}: model_args: {e}") from None
        rows.append(Row(name, str(r["model"]), args))
    adapters = _adapter_specs(path, raw.get("adapters"))
    for row in rows:
        for k, v in row.model_args.items():
            adapter = str(v).removeprefix(TRAINED_PREFIX)
            if str(v).startswith(TRAINED_PREFIX) and adapter not in adapters:
                raise SpecError(f"{path}: row {row.name!r}: {k}={v} names no adapter under `adapters:` "
                                f"({', '.join(adapters) or 'none defined'})")
    tasks = _typed(path, raw, "tasks", lambda t: t.split(",") if isinstance(t, str) else [str(x) for x in t],
                   "a list of task names")
    spec = Spec(name=str(raw.get("name", Path(path).stem)), tasks=tasks, rows=rows,
                limit=_typed(path, raw, "limit", _limit, "a positive number of documents (or a fraction < 1)"),
                seed=_typed(path, raw, "seed", int, "an integer", 1234),
                gen_kwargs=_typed(path, raw, "gen_kwargs", parse_kv, "a mapping or key=value,... string", {}),
                metadata=_typed(path, raw, "metadata", _mapping, "a mapping of task settings (docs/options.md)", {}),
                batch_size=_typed(path, raw, "batch_size", int, "an integer", 1),
                device=str(raw.get("device", "auto")), metric=str(raw.get("metric", "rm_reward")),
                reference=None if raw.get("reference") is None else str(raw["reference"]),
                columns={k: str(v) for k, v in _typed(path, raw, "columns", _mapping, "a mapping", {}).items()},
                adapters=adapters)
    if spec.reference is not None and spec.reference not in seen:
        raise SpecError(f"{path}: reference {spec.reference!r} is not a row name ({', '.join(seen)})")
    return spec


def validate_spec(spec: Spec, path: str | Path = "spec") -> None:
    """Check every row and task against lm-eval and every cell the way a run checks itself, before any cell runs:
    model names, model_args (their declarations, :mod:`icdpo_eval.options`), tasks, task settings and what
    aggregation will use (:func:`icdpo_eval.preflight.check_run`)."""
    from icdpo_eval._lm_eval_hook import install

    install()
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    from icdpo_eval import options, preflight

    for row in spec.rows:
        try:
            get_model(row.model)
        except (ValueError, KeyError):
            raise SpecError(f"{path}: row {row.name!r}: unknown model {row.model!r}; use a name of `lm_eval --model`: "
                            f"{', '.join(model_names())}") from None
        decl = options.MODELS.get(row.model)
        if decl is not None:
            args = {k: v for k, v in row.model_args.items() if not str(v).startswith(TRAINED_PREFIX)}
            try:
                decl.parse(args)
            except UserError as e:
                raise SpecError(f"{path}: row {row.name!r}: {e}") from None
    known = set(TaskManager().all_tasks)
    unknown = [t for t in spec.tasks if t not in known]
    if unknown:
        raise SpecError(f"{path}: unknown task(s) {', '.join(unknown)}; `lm_eval ls tasks` lists them (ours: "
                        f"{', '.join(sorted(preflight.our_tasks()))})")
    try:
        options.TASK_SETTINGS.parse(spec.metadata, where="metadata")
    except UserError as e:
        raise SpecError(f"{path}: {e}") from None
    for row in spec.rows:
        if any(str(v).startswith(TRAINED_PREFIX) for v in row.model_args.values()):
            continue  # its adapter is trained before the row runs; the row checks itself then
        try:
            preflight.check_run(row.model, row.model_args, spec.tasks, spec.metadata, spec.gen_kwargs, spec.limit)
        except UserError as e:
            raise SpecError(f"{path}: row {row.name!r}: {e}") from None


def model_names() -> list[str]:
    """Every model name lm-eval's registry knows (ours included), from the registry itself."""
    from lm_eval.api.registry import model_registry

    return sorted(dict(model_registry.items()))


TRAINED_PREFIX = "trained:"  # a model_arg value "trained:NAME" = the adapter NAME of the spec's `adapters:`


def _adapter_specs(path: str | Path, raw: Any) -> dict[str, dict[str, Any]]:
    """Validate ``adapters:``: ``NAME: {method: sft|dpo, <icdpo-eval train options>}``."""
    if not raw:
        return {}
    from dataclasses import fields

    from icdpo_eval.baselines.train import METHODS, TrainArgs

    allowed = {f.name for f in fields(TrainArgs)} - {"out", "resume"}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: `adapters:` must map names to training options")
    out = {}
    for name, opts in raw.items():
        if not isinstance(opts, dict) or opts.get("method") not in METHODS:
            raise SpecError(f"{path}: adapter {name!r} needs `method: sft` or `method: dpo`")
        bad = sorted(set(opts) - allowed)
        if bad:
            raise SpecError(f"{path}: adapter {name!r}: unknown training option(s) {', '.join(bad)}; "
                            f"allowed: {', '.join(sorted(allowed))}")
        out[str(name)] = dict(opts)
    return out


def adapter_dir(name: str, opts: dict[str, Any]) -> Path:
    """Where the spec's adapter ``name`` is cached: the cache dir, keyed by its training options, the package
    version and the training code (a change to any of them trains a new adapter)."""
    import inspect

    from icdpo_eval import __version__
    from icdpo_eval.baselines import train as train_mod
    from icdpo_eval.data import embedded

    blob = json.dumps({"opts": opts, "version": __version__,
                       "code": hashlib.sha256(inspect.getsource(train_mod).encode()).hexdigest()},
                      sort_keys=True, default=str)
    return embedded.cache_dir() / "adapters" / f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def prepare_adapters(spec: Spec) -> dict[str, Path]:
    """Train (once; cached, see :func:`adapter_dir`) every adapter the spec's rows use. Under ``accelerate launch``
    rank 0 trains each in a process of its own (the trainer must not join the leaderboard's process group)."""
    import shutil

    from icdpo_eval.baselines.train import PROVENANCE, TrainArgs, train

    used = {str(v).removeprefix(TRAINED_PREFIX) for r in spec.rows for v in r.model_args.values()
            if str(v).startswith(TRAINED_PREFIX)}
    paths = {}
    for name in sorted(used):
        opts = spec.adapters[name]
        path = adapter_dir(name, opts)
        if not (path / PROVENANCE).is_file():
            if path.exists():
                shutil.rmtree(path)  # an unfinished earlier attempt
            print(f"leaderboard: training adapter {name!r} ({opts}) -> {path}", file=sys.stderr)
            if settings.world_size() > 1:
                _train_apart(opts, path)
            else:
                train(TrainArgs(out=str(path), **opts))
        paths[name] = path
    return paths


def _train_apart(opts: dict[str, Any], path: Path) -> None:
    """``icdpo-eval train`` in a child process with no launcher variables (a single-process trainer)."""
    import subprocess

    argv = [sys.executable, "-m", "icdpo_eval.cli", "train", str(opts["method"]), "--out", str(path)]
    for k, v in opts.items():
        if k != "method":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    subprocess.run(argv, env=settings.single_process_env(), check=True)


def with_adapters(spec: Spec, paths: dict[str, Path]) -> Spec:
    """The spec with every ``trained:NAME`` model_arg replaced by the adapter's folder."""
    from dataclasses import replace

    def sub(v: Any) -> Any:
        return str(paths[str(v).removeprefix(TRAINED_PREFIX)]) if str(v).startswith(TRAINED_PREFIX) else v

    return replace(spec, rows=[Row(r.name, r.model, {k: sub(v) for k, v in r.model_args.items()}) for r in spec.rows])


def cells_of(spec: Spec) -> list[Cell]:
    return [Cell(r.name, r.model, r.model_args, t, spec.limit, spec.seed, spec.gen_kwargs, spec.metadata,
                 spec.batch_size, spec.metric, spec.device) for r in spec.rows for t in spec.tasks]


# ------------------------------------------------------------------------------------ running
def run_cell(cell: Cell) -> dict[str, Any]:
    """Run one cell through lm-eval in this process (:func:`icdpo_eval.report.cells.run_cell`)."""
    from icdpo_eval.report.cells import run_cell as run

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
        return CellResult(cell, d["value"], d["scores"], d["rm"], d["higher_is_better"], reused=True,
                          lengths=lengths)
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
    record = {"row": cell.row, "config": cell.config(), "value": value, "rm": rm, "higher_is_better": hib,
              "scores": scores, "lengths": lengths, "candidates": candidates, "seconds": round(time.time() - t0, 1)}
    # written last: a cell without it is unfinished and reruns
    atomic_write(marker, lambda fh: fh.write(json.dumps(record, indent=2, default=_jsonable)))
    return CellResult(cell, value, scores, rm, hib, lengths=lengths, candidates=candidates)


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
    the exactness gate, :mod:`icdpo_eval.report.exact_gate`)."""
    from icdpo_eval.report.exact_gate import DOCUMENTS, document_rows

    path = out / DOCUMENTS
    with open(path, "w", encoding="utf-8") as fh:
        for (row, task), r in results.items():
            samples_path = out / "cells" / r.cell.key() / f"samples_{task}.jsonl"
            with open(samples_path, encoding="utf-8") as sf:
                samples = [json.loads(line) for line in sf if line.strip()]
            for d in document_rows(row, task, samples, r.cell.metric):
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    return path


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
    """``rm_reward_lc`` of a column against the reference row (:func:`icdpo_eval.judges.length_control.lc_reward`,
    our extension): NaN without a reference, for non-reward metrics, or without per-document lengths."""
    if ref is None or spec.metric != "rm_reward":
        return math.nan, math.nan, math.nan
    from icdpo_eval.judges.length_control import lc_reward

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
                                 sum(lengths) / len(lengths) if lengths else math.nan, *lc))
    return entries


# ------------------------------------------------------------------------------------- outputs
def _fmt(x: float, nd: int = 2) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{nd}f}"


def write_md(spec: Spec, entries: list[Entry], path: Path) -> None:
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
        lines.append(f"| {row.name} | " + " | ".join(
            f"{_fmt(e.value)} [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}]" for e in cells) + " |")
    if spec.reference:
        lines += ["", f"Paired Wilcoxon signed-rank test vs **{spec.reference}** (per-document values, "
                      "paired by doc id; two-sided p):", "",
                  "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for row in spec.rows:
            cells = [by[(row.name, c)] for c in cols]
            lines.append(f"| {row.name} | " + " | ".join(
                "ref" if row.name == spec.reference else _fmt(e.p_value, 3) for e in cells) + " |")
    lines += ["", "Mean response length (tokens of the embedded Gemma-3 tokenizer, the same for every model; for a "
                  "`*_pairs` task the length difference chosen − rejected; docs/length.md):", "",
              "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in spec.rows:
        lines.append(f"| {row.name} | " + " | ".join(_fmt(by[(row.name, c)].length, 1) for c in cols) + " |")
    if spec.reference and spec.metric == "rm_reward":
        lines += ["", f"rm_reward_lc: the reward at zero length difference to **{spec.reference}** (per-document "
                      "reward difference regressed on length difference, reference + intercept, [95% CI]; our "
                      "extension, not the paper's metric; docs/length.md):", "",
                  "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for row in spec.rows:
            lines.append(f"| {row.name} | " + " | ".join(
                "ref" if row.name == spec.reference else
                f"{_fmt(e.lc)} [{_fmt(e.lc_low)}, {_fmt(e.lc_high)}]" for e in (by[(row.name, c)] for c in cols))
                + " |")
    rms = sorted({e.rm for e in entries if e.rm})
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
                           for k, v in (("lc_value", e.lc), ("lc_low", e.lc_low), ("lc_high", e.lc_high))}})


def write_png(spec: Spec, entries: list[Entry], path: Any, fmt: str = "png") -> None:
    """The chart (a file path, or a binary file object with ``fmt``: the report inlines it as ``svg``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [c for c, _ in columns_of(spec)]
    by = {(e.row, e.column): e for e in entries}
    n_rows = len(spec.rows)
    width = 0.8 / n_rows
    fig, (ax, ax_len) = plt.subplots(1, 2, figsize=(max(6.0, 1.2 + len(cols) * n_rows * 0.45) + 5.0, 4.5),
                                     gridspec_kw={"width_ratios": [max(2.0, len(cols) * n_rows * 0.45), 5.0]})
    x = np.arange(len(cols))
    for i, row in enumerate(spec.rows):
        es = [by[(row.name, c)] for c in cols]
        vals = np.array([e.value for e in es])
        err = np.array([[e.value - e.ci_low if not math.isnan(e.ci_low) else 0.0 for e in es],
                        [e.ci_high - e.value if not math.isnan(e.ci_high) else 0.0 for e in es]])
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, yerr=err, capsize=3, label=row.name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, cols)
    ylabel = f"{spec.metric} (x100)" if spec.metric == "rm_reward" else spec.metric
    ax.set_ylabel(ylabel)
    ax.set_title(f"{spec.name}: mean with 95% bootstrap CI (n per cell: limit={spec.limit})")
    ax.legend(fontsize="small", ncol=max(1, n_rows // 4))
    # reward against mean response length: how much of a row's standing goes with length
    markers = "osD^v<>pP*X"
    for i, row in enumerate(spec.rows):
        es = [by[(row.name, c)] for c in cols]
        ax_len.scatter([e.length for e in es], [e.value for e in es], marker=markers[i % len(markers)],
                       label=row.name, color=f"C{i % 10}")
    ax_len.set_xlabel("mean response length (tokens; *_pairs: chosen − rejected)")
    ax_len.set_ylabel(ylabel)
    ax_len.set_title(f"{spec.metric} vs length (one point per row and column)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format=fmt)
    plt.close(fig)


def write_page(spec: Spec, entries: list[Entry], runs: list[Any], path: Path, title: str) -> Path:
    """The HTML report of these entries and runs (:mod:`icdpo_eval.report.html`), with this chart inlined as SVG."""
    from icdpo_eval.report import html

    chart = io.BytesIO()
    write_png(spec, entries, chart, fmt="svg")
    return html.write_page(runs, entries, [c for c, _ in columns_of(spec)], chart.getvalue().decode("utf-8"),
                           path, title)


def run_leaderboard(spec: Spec, out: Path, runner: Callable[[Cell], dict[str, Any]] | None = None,
                    rerun: bool = False, isolate: bool = False) -> list[Entry]:
    """Every cell (:mod:`icdpo_eval.report.cells`: grouped by the models they share, each loaded once, on one
    process or many), then the tables (rank 0). ``runner`` replaces lm-eval (tests)."""
    from icdpo_eval.report.cells import CellRunner, Processes, write_log

    procs = Processes()
    user_runner = runner
    out.mkdir(parents=True, exist_ok=True)
    # cells run with the adapters' folders; the tables keep the spec's own model_args ("trained:NAME")
    paths = prepare_adapters(spec) if procs.main else None
    procs.barrier()
    cells = cells_of(with_adapters(spec, procs.agree(paths)))

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
