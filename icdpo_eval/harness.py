"""lm-eval through its public doors, for every run this package starts itself.

Our models go into lm-eval's model registry (``lm_eval.api.registry.model_registry.register``, after lm-eval's own
``lm_eval.models`` has registered its built-ins), our task folder reaches ``TaskManager`` as ``include_path``, and a
run is lm-eval's ``simple_evaluate`` inside :func:`icdpo_eval.config.preflight.run_checked` (the checks before any
weights load; the record, rewards and details after). Nothing of lm-eval is patched here: :func:`evaluate` (the
package's ``icdpo_eval.evaluate``, the leaderboard's cells, ``icdpo-eval score``) and ``icdpo-eval run``
(:func:`run_command`) behave the same whether or not the stock-CLI hook (:mod:`icdpo_eval._lm_eval_hook`) has
patched the process: they call lm-eval's own functions, not its wrappers.

``icdpo-eval run`` reads lm-eval's run flags from lm-eval's public configuration dataclass
(``lm_eval.config.evaluate_config.EvaluatorConfig``: one flag per field, its help text), validates them there
(``EvaluatorConfig.from_cli``), then saves and prints through lm-eval's ``EvaluationTracker`` and ``make_table``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icdpo_eval.errors import OptionError


def register_models() -> None:
    """Our lm-eval names as lazy ``"module:Class"`` entries of lm-eval's model registry (nothing heavy imported).
    lm-eval's built-ins are registered first (``import lm_eval.models``): lm-eval loads them only into an empty
    registry. Names already there (a release that discovers the ``lm_eval.models`` entry points) are left as
    they are."""
    import lm_eval.models  # noqa: F401  (registers lm-eval's own models)
    from lm_eval.api import registry

    from icdpo_eval.config.options import TARGETS

    for name, target in TARGETS.items():
        if name not in registry.model_registry:
            registry.model_registry.register(name, target=target)


def _original(fn: Any) -> Any:
    """lm-eval's own function where the stock-CLI hook wrapped it in this process (the wrapper's ``__wrapped__``)."""
    return fn.__wrapped__ if getattr(fn, "_icdpo_eval_wrapped", False) else fn


def _include(include_path: str | Path | Sequence[str | Path] | None) -> list[str]:
    from icdpo_eval.config.options import tasks_dir

    user = [] if include_path is None else (
        [str(include_path)] if isinstance(include_path, (str, Path)) else [str(p) for p in include_path])
    ours = tasks_dir().resolve()
    return [str(ours), *(p for p in user if Path(p).resolve() != ours)]


def _split(tasks: str | Sequence[Any]) -> list[Any]:
    """Task names, ``a,b`` split; task configs (dicts of a YAML file lm-eval resolved) as they are."""
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    out: list[Any] = []
    for item in items:
        out += [t.strip() for t in item.split(",") if t.strip()] if isinstance(item, str) else [item]
    return out


def task_manager(tasks: str | Sequence[str] | None = None, include_path: Any = None,
                 metadata: dict[str, Any] | None = None) -> Any:
    """A ``TaskManager`` over our task folder (then the user's ``include_path``). lm-eval's own ~14,000 task YAMLs
    are indexed only when a task asked for is not among ours and the user's (``include_defaults``), or when
    ``tasks`` is None (every task wanted)."""
    from lm_eval.tasks import TaskManager

    paths = _include(include_path)
    meta = dict(metadata or {})
    if tasks is not None:
        names = [t for t in _split(tasks) if isinstance(t, str)]
        own = TaskManager(include_path=paths, include_defaults=False, metadata=meta)
        if all(own.match_tasks([n]) for n in names):
            return own
    return TaskManager(include_path=paths, metadata=meta)


def evaluate(model: Any = "icdpo", tasks: str | Sequence[str] = "hh_harmless_mini",
             model_args: str | dict[str, Any] | None = None, *, include_path: Any = None,
             **kwargs: Any) -> dict[str, Any] | None:
    """``lm_eval.simple_evaluate`` with our models registered, our tasks found and the run checked first; the
    other keyword arguments are ``simple_evaluate``'s. Unknown tasks fail with one line."""
    import lm_eval.evaluator

    register_models()
    names = _split(tasks)
    tm = kwargs.pop("task_manager", None)
    if tm is None:
        from icdpo_eval.config.preflight import _as_dict

        # lm-eval's own merge (simple_evaluate without a task manager): model_args, then metadata
        tm = task_manager(names, include_path, {**_as_dict(model_args), **(kwargs.get("metadata") or {})})
    missing = [n for n in names if isinstance(n, str) and not tm.match_tasks([n])]
    if missing:
        raise OptionError(f"unknown task(s) {', '.join(missing)}; `lm_eval ls tasks` lists them")
    from icdpo_eval.config import preflight

    return preflight.run_checked(_original(lm_eval.evaluator.simple_evaluate),
                                 {"model": model, "model_args": model_args or "", "tasks": names,
                                  "task_manager": tm, **kwargs})


# ------------------------------------------------------------------------------------------- icdpo-eval run
def _dict_arg(tokens: Sequence[str] | str | None) -> dict[str, Any] | None:
    """``key=val,key2=val2`` tokens or JSON objects, merged left to right (lm-eval's flag syntax)."""
    if tokens is None:
        return None
    from lm_eval.utils import simple_parse_args_string

    out: dict[str, Any] = {}
    for tok in [tokens] if isinstance(tokens, str) else tokens:
        tok = tok.strip()
        if tok.startswith("{"):
            try:
                value = json.loads(tok)
            except json.JSONDecodeError as e:
                raise OptionError(f"{tok!r} is not a JSON object ({e.msg})") from None
            if not isinstance(value, dict):
                raise OptionError(f"{tok!r} is not a JSON object")
            out.update(value)
        else:
            out.update(simple_parse_args_string(tok))
    return out


def _seed(text: str) -> list[int | None]:
    values = [v.strip() for v in text.split(",")]
    try:
        return [None if v.lower() == "none" else int(v) for v in values]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: integers or None, comma-separated") from None


def _optional_bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes")


_REQUEST_CACHE = {"true": {"cache_requests": True}, "refresh": {"cache_requests": True, "rewrite_requests_cache": True},
                  "delete": {"delete_requests_cache": True}}
# fields whose flag does not follow from the field's type alone
_SPECIAL: dict[str, dict[str, Any]] = {
    "batch_size": {"type": str, "metavar": "N|auto|auto:N"},
    "limit": {"type": float},
    "seed": {"type": _seed, "metavar": "SEED[,SEED...]"},
    "cache_requests": {"choices": sorted(_REQUEST_CACHE), "nargs": "?", "const": "true"},
    "apply_chat_template": {"nargs": "?", "const": True, "metavar": "TEMPLATE"},
    "fewshot_as_multiturn": {"type": _optional_bool, "nargs": "?", "const": True},
    "verbosity": {"type": str.upper},
}
_NOT_HERE = ("wandb_args", "wandb_config_args", "trackio_args")  # lm-eval's CLI logs to these; ours does not


def run_parser() -> argparse.ArgumentParser:
    """``icdpo-eval run``'s flags: one per field of lm-eval's ``EvaluatorConfig``, its help text lm-eval's."""
    from dataclasses import MISSING, fields

    from lm_eval.config.evaluate_config import EvaluatorConfig

    p = argparse.ArgumentParser(
        prog="icdpo-eval run", description="lm-eval's run (the flags of `lm_eval run`) with icdpo-eval's models and "
        "tasks registered through lm-eval's public API; results and samples are written as lm-eval writes them.")
    for f in fields(EvaluatorConfig):
        if f.name in _NOT_HERE:
            continue
        kind = str(f.type)
        help_text = f.metadata.get("help", "")
        default = None if f.default is MISSING else f.default
        if f.name in _SPECIAL:
            opts = dict(_SPECIAL[f.name])
        elif kind == "bool":
            opts = {"action": "store_true"}
        elif kind.startswith("dict"):
            opts = {"nargs": "+", "metavar": "KEY=VAL"}
        elif kind.startswith("int"):
            opts = {"type": int}
        else:
            opts = {"type": str}
        if opts.get("action") != "store_true" and default not in (None, MISSING):
            help_text += f" (default: {default})"
        p.add_argument(f"--{f.name}", default=None, help=help_text, **opts)
    return p


def _config(ns: argparse.Namespace) -> Any:
    from lm_eval.config.evaluate_config import DICT_KEYS, EvaluatorConfig

    for key in DICT_KEYS:
        if hasattr(ns, key):
            setattr(ns, key, _dict_arg(getattr(ns, key)))
    if ns.cache_requests is not None:
        ns.cache_requests = _REQUEST_CACHE[ns.cache_requests]
    try:
        return EvaluatorConfig.from_cli(ns)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise OptionError(f"{e}") from None


def run_command(argv: Sequence[str]) -> int:
    """``icdpo-eval run ARGV``: lm-eval's run, its results JSON and samples written by lm-eval's tracker, its
    table printed; a bad flag or user error ends with one line (exit 2)."""
    import logging

    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import handle_non_serializable, make_table, setup_logging

    ns = run_parser().parse_args(list(argv))
    setup_logging(ns.verbosity or "INFO")
    cfg = _config(ns)
    if cfg.output_path:
        cfg.hf_hub_log_args["output_path"] = cfg.output_path
    tracker = EvaluationTracker(**cfg.hf_hub_log_args)
    if any(str(t).endswith(".yaml") or Path(str(t)).is_dir() for t in _split(cfg.tasks)):
        cfg.include_path = _include(cfg.include_path)
        tm = cfg.process_tasks(cfg.metadata)  # task files and folders: lm-eval's own resolution
        tasks: list[Any] = list(cfg.tasks)
    else:
        tm = task_manager(cfg.tasks, cfg.include_path, cfg.metadata)
        tasks = _split(cfg.tasks)
    logging.getLogger(__name__).info("Selected tasks: %s", tasks)
    seed = cfg.seed or [None] * 4
    cache = cfg.cache_requests or {}
    results = evaluate(
        cfg.model, tasks, cfg.model_args, task_manager=tm, num_fewshot=cfg.num_fewshot, batch_size=cfg.batch_size,
        max_batch_size=cfg.max_batch_size, device=cfg.device, use_cache=cfg.use_cache,
        cache_requests=cache.get("cache_requests", False),
        rewrite_requests_cache=cache.get("rewrite_requests_cache", False),
        delete_requests_cache=cache.get("delete_requests_cache", False), limit=cfg.limit, samples=cfg.samples,
        check_integrity=cfg.check_integrity, write_out=cfg.write_out, log_samples=cfg.log_samples,
        evaluation_tracker=tracker, system_instruction=cfg.system_instruction,
        apply_chat_template=cfg.apply_chat_template, fewshot_as_multiturn=cfg.fewshot_as_multiturn,
        gen_kwargs=cfg.gen_kwargs, verbosity=cfg.verbosity, predict_only=cfg.predict_only,
        random_seed=seed[0], numpy_random_seed=seed[1], torch_random_seed=seed[2], fewshot_random_seed=seed[3],
        confirm_run_unsafe_code=cfg.confirm_run_unsafe_code, metadata=cfg.metadata)
    if results is None:  # a rank other than 0 under data parallel: rank 0 writes and prints
        return 0
    samples = results.pop("samples", None) if cfg.log_samples else None
    if cfg.show_config:
        print(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False))
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"] if samples is not None else ():
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    if tracker.push_results_to_hub or tracker.push_samples_to_hub:
        tracker.recreate_metadata_card()
    shown = {k: v for k, v in cfg.model_args.items() if k != "trust_remote_code"}
    sizes = ",".join(map(str, results["config"].get("batch_sizes", [])))
    print(f"{cfg.model} ({shown}), gen_kwargs: ({cfg.gen_kwargs}), limit: {cfg.limit}, num_fewshot: "
          f"{cfg.num_fewshot}, batch_size: {cfg.batch_size}{f' ({sizes})' if sizes else ''}")
    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    return 0
