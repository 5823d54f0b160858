"""The checks a run makes before any weights load, and what it records of its configuration.

:func:`check_run` takes what ``lm_eval.simple_evaluate`` is given (model, model_args, tasks, ``--metadata``,
``--gen_kwargs``, ``--limit``) and fails with one line naming the option, setting or document when:

* a variable that became an lm-eval option is still set (:func:`icdpo_eval.config.settings.check_moved`);
* a model_arg of one of our models is unknown, of the wrong type or out of range (its declaration,
  :mod:`icdpo_eval.config.options`), or names a file, adapter or model folder that is not there;
* a task setting (:data:`icdpo_eval.config.options.TASK_SETTINGS`) is bad, or what aggregation will use cannot load:
  the reward model behind ``rm_reward`` (a local folder without a loadable config, a hub name neither cached
  nor reachable), the judge's API key and base URL for a win-rate task, the rank set of the MRR task;
* a document's context plus ``max_new_tokens`` exceeds ``max_length`` (the model's own limit by default): the
  first such document is named with its token counts. Contexts with demos are checked exactly here for the
  ``random`` and ``bm25`` retrievers; for ``bm25_sbert`` (whose re-ranker is a model) the model checks every
  document's contexts before its first sample.

Names of the vocabulary (``embedded:base``, ...) given to a model that is not ours (``--model hf``) are turned
into the local folder here. :func:`record` is what the registration hook adds to the results' ``config``
(``icdpo_eval``: the effective task settings per task, the environment without secrets).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from icdpo_eval.config import names, options, settings
from icdpo_eval.config.options import our_tasks, read_task_yaml, task_settings  # noqa: F401 (re-exported)
from icdpo_eval.errors import OptionError

log = logging.getLogger(__name__)
# the quick check counts with the tokenizers library and fails only beyond this many tokens over the limit; the
# model's exact check (transformers' tokenizer) runs again before its first sample
LENGTH_MARGIN = 8


def _as_dict(model_args: Any) -> dict[str, Any]:
    if isinstance(model_args, dict):
        return dict(model_args)
    if not model_args:
        return {}
    from lm_eval.utils import simple_parse_args_string

    return simple_parse_args_string(str(model_args))


def _task_list(tasks: Any) -> list[str]:
    if tasks is None:
        return []
    if isinstance(tasks, str):
        return [t for t in tasks.split(",") if t]
    return [t for t in tasks if isinstance(t, str)]


def _metrics(task_cfg: dict[str, Any]) -> set[str]:
    return {m.get("metric") for m in task_cfg.get("metric_list", []) if isinstance(m, dict)}


def check_task(task: str, cfg: options.Config) -> None:
    """What this task's aggregation will use can load (module docstring)."""
    tcfg = our_tasks()[task]
    metrics = _metrics(tcfg)
    if "rm_reward" in metrics:
        from icdpo_eval.judges.reward_model import check_rm

        check_rm(cfg.rm)
    if "winrate" in metrics:
        from icdpo_eval.judges.pairwise import require_api_key

        require_api_key()
    if "mrr" in metrics:
        if not cfg.rank_set:
            raise OptionError(f"task {task} needs the task setting rank_set: build a rank set with `icdpo-eval "
                              "build-rank-set --task hh_harmless --out rank.jsonl`, then pass --metadata "
                              "'{\"rank_set\": \"rank.jsonl\"}'")
        from icdpo_eval.tasks.rank import load_rank_rows

        load_rank_rows(cfg.rank_set)


def _docs(task: str, cfg: options.Config, limit: Any) -> list[dict[str, Any]]:
    """The documents of one of our generation / pairs tasks that the run will see (``--limit`` applied)."""
    from icdpo_eval.data.datasets import eval_rows

    kwargs = our_tasks()[task].get("dataset_kwargs") or {}
    data = kwargs.get("data")
    if not data:
        return []
    rows = eval_rows(data, cfg.dialogue)
    if kwargs.get("sample") == "winrate":
        from icdpo_eval.tasks.winrate import in_sample

        keep = in_sample((r["id"] for r in rows), cfg.winrate_n, cfg.winrate_seed)
        rows = [r for r in rows if r["id"] in keep]
    if limit is not None:
        n = int(limit) if float(limit) >= 1 else int(len(rows) * float(limit))
        rows = rows[:n]
    return rows


class _Req:
    """What :meth:`MethodLM.check_lengths` reads of a request."""

    def __init__(self, task: str, i: int, doc: dict[str, Any]) -> None:
        self.task_name, self.doc_id, self.doc, self.args = task, i, doc, (doc["prompt"], {})


def check_lengths(model: str, model_args: dict[str, Any], tasks: Sequence[str], metadata: dict[str, Any] | None,
                  gen_kwargs: dict[str, Any], limit: Any) -> None:
    """Every document's contexts + max_new_tokens within max_length, for our models on our tasks (a tokenizer,
    no weights)."""
    from icdpo_eval.data.datasets import task_limits

    work = []
    for task in tasks:
        tcfg = our_tasks().get(task)
        if tcfg is None:
            continue
        docs = _docs(task, task_settings(task, model_args, metadata), limit)
        if docs:
            work.append((task, tcfg, docs))
    if not work:
        return
    cls = options.model_class(model)
    if not hasattr(cls, "preview"):  # e.g. rm_bon scoring pairs: the RM reads its own max_length
        return
    args = {k: v for k, v in model_args.items() if k not in ("device", "batch_size", "max_batch_size")}
    preview = cls.preview(fast_tokenizer=True, **args)
    for task, tcfg, docs in work:
        reqs = [_Req(task, i, d) for i, d in enumerate(docs)]
        if tcfg.get("output_type") == "multiple_choice":
            longest = max(len(preview.engine.encode_continuation(" " + d[k])) for d in docs
                          for k in ("chosen", "rejected") if isinstance(d.get(k), str))
            max_new = longest + 1
            exclude = True
        else:
            gk = {**(tcfg.get("generation_kwargs") or {}), **(gen_kwargs or {})}
            cfg = preview.cfg
            max_new = cfg["max_new_tokens"] if "max_new_tokens" in preview.OPTIONS and cfg["max_new_tokens"] \
                else int(gk.get("max_gen_toks", task_limits(task).max_gen_toks))
            exclude = False
        # bm25_sbert's re-ranker is a model: here only the plain contexts, the model checks its demos' before sampling
        plain = getattr(preview, "retriever_kind", "random") == "bm25_sbert"
        preview.check_lengths(task, reqs, max_new, exclude_self=exclude, plain=plain, margin=LENGTH_MARGIN)


def resolve_foreign(model: Any, model_args: Any) -> Any:
    """Embedded names in the model_args of a model that is not ours (``--model hf``) -> their local folders."""
    if not isinstance(model, str) or model in options.TARGETS:
        return model_args
    args = _as_dict(model_args)
    changed = {k: names.resolve(v) for k, v in args.items() if isinstance(v, str) and v.startswith("embedded:")}
    if not changed:
        return model_args
    for k, v in args.items():
        if isinstance(v, str) and v.startswith("embedded:"):
            names.check_model_name(f"model_arg {k}", v)
    if isinstance(model_args, dict):
        return {**model_args, **changed}
    return ",".join(f"{k}={changed.get(k, v)}" for k, v in args.items())


def check_run(model: Any, model_args: Any, tasks: Any, metadata: dict[str, Any] | None = None,
              gen_kwargs: Any = None, limit: Any = None) -> dict[str, Any]:
    """Every check of the module docstring; returns :func:`record`'s value for this run."""
    settings.check_moved()
    args = _as_dict(model_args)
    gk = _as_dict(gen_kwargs)
    ours = isinstance(model, str) and model in options.TARGETS
    if ours:
        options.MODELS[model].parse(args)  # the constructor parses the same way: fail here, before anything loads
        if model != "rm":
            options.check_gen_kwargs(model, gk)
    task_names = _task_list(tasks)
    effective = {}
    for task in task_names:
        if task in our_tasks():
            cfg = task_settings(task, args, metadata)
            check_task(task, cfg)
            effective[task] = {k: v for k, v in cfg.as_dict().items()}
    if ours:
        check_lengths(model, args, task_names, metadata, gk, limit)
    return {"task_settings": effective, "environment": settings.snapshot()}


def before_run() -> None:
    """Forget the notes of an earlier run in this process (a leaderboard runs many)."""
    from icdpo_eval.models import details
    from icdpo_eval.tasks import metrics

    details.clear()
    metrics.SCORED.clear()


def run_checked(simple_evaluate: Any, arguments: dict[str, Any]) -> Any:
    """One lm-eval run with our checks around it: ``simple_evaluate(**arguments)`` (lm-eval's, unwrapped) after
    :func:`check_run` (nothing loads before it passes), with embedded names resolved for a foreign model, the
    user's explicit ``gen_kwargs`` known to our models, and :func:`after_run`'s record, rewards and details in the
    results. The one path of :func:`icdpo_eval.harness.evaluate` (``icdpo-eval run``, the package API) and of the
    stock ``lm_eval`` CLI's hook."""
    from icdpo_eval import runtime

    a = dict(arguments)
    metadata = dict(getattr(a.get("task_manager"), "metadata", None) or {})
    metadata.update(a.get("metadata") or {})
    info = check_run(a["model"], a.get("model_args"), a["tasks"], metadata, a.get("gen_kwargs"), a.get("limit"))
    a["model_args"] = resolve_foreign(a["model"], a.get("model_args"))
    before_run()
    # a model lm-eval builds from its name is this run's alone: its weights may go before the scorer loads
    with runtime.run_gen_kwargs(_as_dict(a.get("gen_kwargs")), metadata), \
            runtime.policy_run(release=isinstance(a["model"], str)):
        results = simple_evaluate(**a)
    after_run(results, info)
    return results


def after_run(results: Any, info: dict[str, Any]) -> None:
    """The run's record in its results, the rewards in every sample (under data parallel rank 0 scored the other
    ranks' documents: their samples get those rewards), and what each document's method saw and computed."""
    from icdpo_eval.models import details
    from icdpo_eval.tasks import metrics

    record(results, info)
    metrics.fill_samples(results)
    details.attach(results)


def record(results: dict[str, Any], info: dict[str, Any]) -> None:
    """Add the run's record to lm-eval's results dict (``config.icdpo_eval``)."""
    if isinstance(results, dict) and isinstance(results.get("config"), dict):
        import importlib.metadata

        results["config"]["icdpo_eval"] = {"version": importlib.metadata.version("icdpo-eval"), **info}

