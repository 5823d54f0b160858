"""A leaderboard spec: its YAML read and validated (rows, tasks, limit, seed, gen_kwargs, metadata,
model_defaults, adapters), and the cells (row x task) it asks for. Format: ``docs/leaderboard.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from icdpo_eval.errors import UserError

LABELS = {"hh_harmless": "Harmless", "hh_helpful": "Helpful", "synthetic_gpt": "SyntheticGPT",
          "hh_harmless_mini": "Harmless (mini)"}
TOTAL_TASK = "hh_harmless+hh_helpful"  # the paper's "Total": mean over both tasks' documents pooled


class SpecError(UserError):
    """A malformed leaderboard spec."""


# ----------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class Row:
    name: str
    model: str
    model_args: dict[str, Any]
    group: str | None = None  # a swept row: the spec row it came from (drawn as one curve)
    sweep: tuple[str, Any] | None = None  # (option, value) of a swept row


def _sweep(path: str | Path, name: str, raw: Any) -> tuple[str, list[Any]]:
    """``sweep: {OPTION: [v1, v2, ...]}``: one option, a non-empty list of distinct values."""
    if not isinstance(raw, dict) or len(raw) != 1:
        raise SpecError(f"{path}: row {name!r}: `sweep:` must map ONE option to a list of values, e.g. "
                        "sweep: {n: [1, 2, 4, 8, 16]}")
    (option, values), = raw.items()
    if not isinstance(values, list) or not values:
        raise SpecError(f"{path}: row {name!r}: sweep {option}: give a non-empty list of values, got {values!r}")
    if len({str(v) for v in values}) != len(values):
        raise SpecError(f"{path}: row {name!r}: sweep {option}: a value repeats in {values!r}")
    return str(option), values


def _outputs_row(path: str | Path, r: dict[str, Any], seen: set[str]) -> Row:
    """``{name, outputs: PATH[, generator: G][, allow_partial: true]}``: saved responses (any format ``icdpo-eval
    score`` reads), scored by the table's RM and judge like a generated row. PATH is relative to the spec's folder
    unless absolute."""
    name = str(r.get("name") or "")
    if not name:
        raise SpecError(f"{path}: an `outputs:` row needs a `name`")
    extra = sorted(str(k) for k in r if k in ("model_args", "sweep") or (k == "model" and r[k] != OUTPUTS))
    if extra:
        raise SpecError(f"{path}: row {name!r}: an `outputs:` row is scored, not generated: drop {', '.join(extra)}")
    if name in seen:
        raise SpecError(f"{path}: duplicate row name {name!r}")
    seen.add(name)
    target = Path(str(r["outputs"])).expanduser()
    if not target.is_absolute():
        target = Path(path).resolve().parent / target
    args: dict[str, Any] = {"outputs": str(target)}
    if r.get("generator") is not None:
        args["generator"] = str(r["generator"])
    if r.get("allow_partial"):
        args["allow_partial"] = True
    return Row(name, OUTPUTS, args)


def sweep_name(name: str, option: str, value: Any) -> str:
    return f"{name} ({option}={value})"


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

        out = {"model": self.model, "model_args": self.model_args, "task": self.task, "limit": self.limit,
               "seed": self.seed, "gen_kwargs": self.gen_kwargs, "metadata": self.metadata,
               "batch_size": self.batch_size, "device": self.device, "metric": self.metric,
               "icdpo_eval": __version__}
        if self.model == OUTPUTS:  # saved responses: a changed file is another cell
            out["outputs_sha256"] = content_digest(Path(str(self.model_args["outputs"])))
        return out

    def key(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of every file under a folder (relative path and bytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


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


# the spec's settings: key -> (parser, what it must be); absent keys take :class:`Spec`'s own defaults
SETTINGS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "limit": (_limit, "a positive number of documents (or a fraction < 1)"),
    "seed": (int, "an integer"),
    "gen_kwargs": (parse_kv, "a mapping or key=value,... string"),
    "metadata": (_mapping, "a mapping of task settings (docs/options.md)"),
    "batch_size": (int, "an integer"),
    "device": (str, "a device name (auto, cpu, cuda, ...)"),
    "metric": (str, "a metric name"),
    "columns": (lambda v: {k: str(x) for k, x in _mapping(v).items()}, "a mapping of column name to task(s)"),
}
KEYS = ("name", "tasks", "rows", "reference", "adapters", "vars", "model_defaults", *SETTINGS)
ROW_KEYS = ("name", "model", "model_args", "sweep", "outputs", "generator", "allow_partial")
OUTPUTS = "outputs"  # the model name of a row of saved responses (``outputs: PATH``), scored, not generated


def _default(f: Any) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def load_spec(path: str | Path, overrides: dict[str, str] | None = None) -> Spec:
    """Parse and check a spec file (shape and types; :func:`validate_spec` checks names against lm-eval). Its keys
    are :data:`KEYS`: an unknown one (a typo) is an error, never a silently ignored setting."""
    raw = _read_yaml(path)
    if "env" in raw:
        raise SpecError(f"{path}: `env:` is no longer read (environment variables are for secrets and paths only); "
                        "put task settings such as the reward model under `metadata:` (e.g. metadata: {rm: proxy})")
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {', '.join(unknown)}; a spec has: {', '.join(KEYS)} "
                        "(docs/leaderboard.md)")
    variables = {str(k): str(v) for k, v in _typed(path, raw, "vars", _mapping, "a mapping", {}).items()}
    variables.update(overrides or {})
    raw = _substitute({k: v for k, v in raw.items() if k != "vars"}, variables)
    defaults = _typed(path, raw, "model_defaults", _mapping, "a mapping of model name to model_args", {})
    if not isinstance(raw["rows"], list):
        raise SpecError(f"{path}: `rows:` must be a list of {{name, model, model_args}}")
    rows, seen = [], set()
    for i, r in enumerate(raw["rows"]):
        if isinstance(r, dict) and "outputs" in r:
            rows.append(_outputs_row(path, r, seen))
            continue
        if not isinstance(r, dict) or "name" not in r or "model" not in r:
            raise SpecError(f"{path}: row {i + 1}: every row needs `name` and `model` (or `outputs: PATH`, saved "
                            f"responses), got {r!r}")
        extra = sorted(str(k) for k in r if k not in ROW_KEYS)
        if extra:
            raise SpecError(f"{path}: row {r['name']!r}: unknown key(s) {', '.join(extra)}; a row has: "
                            f"{', '.join(ROW_KEYS)}")
        name = str(r["name"])
        try:
            args = {**parse_kv(defaults.get(str(r["model"]))), **parse_kv(r.get("model_args"))}
        except SpecError as e:
            raise SpecError(f"{path}: row {name!r}: model_args: {e}") from None
        if r.get("sweep") is None:
            expanded = [Row(name, str(r["model"]), args)]
        else:
            option, values = _sweep(path, name, r["sweep"])
            if option in parse_kv(r.get("model_args")):
                raise SpecError(f"{path}: row {name!r}: {option} is both in model_args and swept; keep it in one")
            expanded = [Row(sweep_name(name, option, v), str(r["model"]), {**args, option: v}, name, (option, v))
                        for v in values]
        for row in expanded:
            if row.name in seen:
                raise SpecError(f"{path}: duplicate row name {row.name!r}")
            seen.add(row.name)
            rows.append(row)
    adapters = _adapter_specs(path, raw.get("adapters"))
    for row in rows:
        for k, v in row.model_args.items():
            adapter = str(v).removeprefix(TRAINED_PREFIX)
            if str(v).startswith(TRAINED_PREFIX) and adapter not in adapters:
                raise SpecError(f"{path}: row {row.name!r}: {k}={v} names no adapter under `adapters:` "
                                f"({', '.join(adapters) or 'none defined'})")
    tasks = _typed(path, raw, "tasks", lambda t: t.split(",") if isinstance(t, str) else [str(x) for x in t],
                   "a list of task names")
    declared = {f.name: f for f in fields(Spec)}
    settings = {key: _typed(path, raw, key, conv, what, _default(declared[key]))
                for key, (conv, what) in SETTINGS.items()}
    spec = Spec(name=str(raw.get("name", Path(path).stem)), tasks=tasks, rows=rows,
                reference=None if raw.get("reference") is None else str(raw["reference"]), adapters=adapters,
                **settings)
    if spec.reference is not None and spec.reference not in seen:
        raise SpecError(f"{path}: reference {spec.reference!r} is not a row name ({', '.join(seen)})")
    return spec


def validate_spec(spec: Spec, path: str | Path = "spec") -> None:
    """Check every row and task against lm-eval and every cell the way a run checks itself, before any cell runs:
    model names, model_args (their declarations, :mod:`icdpo_eval.config.options`), tasks, task settings and what
    aggregation will use (:func:`icdpo_eval.config.preflight.check_run`)."""
    from lm_eval.api.registry import get_model

    from icdpo_eval import harness
    from icdpo_eval.config import options, preflight

    harness.register_models()

    for row in spec.rows:
        if row.model == OUTPUTS:  # read now: a missing file or a bad row fails before any cell runs
            from icdpo_eval.outputs.formats import read

            try:
                got = read(row.model_args["outputs"])
            except UserError as e:
                raise SpecError(f"{path}: row {row.name!r}: {e}") from None
            generators = sorted({g.generator for g in got})
            want = row.model_args.get("generator")
            if want is None and len(generators) > 1:
                raise SpecError(f"{path}: row {row.name!r}: {row.model_args['outputs']} holds several generators "
                                f"({', '.join(generators)}); name one with `generator:`")
            if want is not None and want not in generators:
                raise SpecError(f"{path}: row {row.name!r}: no generator {want!r} in {row.model_args['outputs']} "
                                f"({', '.join(generators)})")
            from icdpo_eval.outputs.matching import match, task_docs

            for task in spec.tasks:  # every document of the limit answered (or allow_partial), before any cell
                limit = spec.limit if isinstance(spec.limit, int) else None
                try:
                    match([g for g in got if want is None or g.generator == want], task,
                          task_docs(task, spec.metadata), limit=limit,
                          allow_partial=bool(row.model_args.get("allow_partial")))
                except UserError as e:
                    raise SpecError(f"{path}: row {row.name!r}: {e}") from None
            continue
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
    tm = harness.task_manager(spec.tasks, metadata=spec.metadata)
    unknown = [t for t in spec.tasks if not tm.match_tasks([t])]
    if unknown:
        raise SpecError(f"{path}: unknown task(s) {', '.join(unknown)}; `lm_eval ls tasks` lists them (ours: "
                        f"{', '.join(sorted(preflight.our_tasks()))})")
    try:
        options.TASK_SETTINGS.parse(spec.metadata, where="metadata")
    except UserError as e:
        raise SpecError(f"{path}: {e}") from None
    for row in spec.rows:
        if row.model == OUTPUTS or any(str(v).startswith(TRAINED_PREFIX) for v in row.model_args.values()):
            continue  # saved outputs; or its adapter is trained before the row runs (the row checks itself then)
        try:
            preflight.check_run(row.model, row.model_args, spec.tasks, spec.metadata, spec.gen_kwargs, spec.limit)
        except UserError as e:
            raise SpecError(f"{path}: row {row.name!r}: {e}") from None


def model_names() -> list[str]:
    """Every model name lm-eval's registry knows (ours included), from the registry itself."""
    from lm_eval.api.registry import model_registry

    return sorted(dict(model_registry.items()))


def guided_by_metric_rm(spec: Spec, row: Row) -> bool:
    """An ARGS row guided by the reward model that scores the table (its ``guide_rm`` is the task's ``rm``, the
    default, or names the spec's ``rm`` setting): its rm_reward measures optimisation against the metric."""
    if row.model != "args":
        return False
    guide = str(row.model_args.get("guide_rm", "task")).strip()  # the spec's model_defaults are merged in
    return guide == "task" or guide == str(spec.metadata.get("rm", "auto")).strip()


GUIDED_MARK = " †"
GUIDED_NOTE = ("† guided by the reward model that scores this table: its rm_reward measures optimisation against "
               "the metric, not alignment (docs/args.md).")

TRAINED_PREFIX = "trained:"  # a model_arg value "trained:NAME" = the adapter NAME of the spec's `adapters:`


def _adapter_specs(path: str | Path, raw: Any) -> dict[str, dict[str, Any]]:
    """Validate ``adapters:``: ``NAME: {method: sft|dpo, <icdpo-eval train options>}``."""
    if not raw:
        return {}
    from dataclasses import fields

    from icdpo_eval.baselines.train import METHODS, TrainArgs, TrainError

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
        try:  # the training options' own checks (TrainOptions.__post_init__), before anything trains
            TrainArgs(out="-", **opts)
        except (TrainError, TypeError) as exc:
            raise SpecError(f"{path}: adapter {name!r}: {exc}") from None
        out[str(name)] = dict(opts)
    return out


def cells_of(spec: Spec) -> list[Cell]:
    return [Cell(r.name, r.model, r.model_args, t, spec.limit, spec.seed, spec.gen_kwargs, spec.metadata,
                 spec.batch_size, spec.metric, spec.device) for r in spec.rows for t in spec.tasks]


