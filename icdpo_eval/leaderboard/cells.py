"""Running a leaderboard's cells: each through lm-eval in this process, nothing loaded or sampled twice, on one
process or many.

* **Nothing sampled twice.** Cells of our models draw their candidates through the candidate store
  (:mod:`icdpo_eval.method.candidates`): rows whose sampling is the same (ICDPO with S / Ŝ / the ICL scorer on
  one retriever; RM-BoN and the length-only rows) sample once and the others only score.
* **Nothing loaded twice.** The plan (:func:`weight_keys`) says which weights each cell loads, from its options
  alone; cells run grouped by the weights they share (the tables keep the spec's order), each model is loaded once
  (:data:`icdpo_eval.engine.WEIGHTS`, the ``hf`` rows included: they get an lm-eval ``HFLM`` over the shared
  weights) and freed as soon as no remaining cell needs it, as is the reward model after the last cell that
  scores with it; the peak is the largest set of models one cell needs at once.
* **Many processes.** Under ``accelerate launch --num_processes K -m icdpo_eval.cli leaderboard SPEC`` every
  process runs every cell, lm-eval shards each cell's documents across the processes and gathers them on rank 0,
  which alone writes the cells' files and the tables; whether a cell is already done is rank 0's answer,
  broadcast, and adapters are trained once, by rank 0, before the cells run.

``isolate=True`` is the plain path the benchmark compares with: every cell loads its models afresh and samples
every candidate itself.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdpo_eval.config import names, settings


# ------------------------------------------------------------------------------------------ processes
class Processes:
    """This process's rank among the ``accelerate launch`` processes (one process: rank 0 of 1)."""

    def __init__(self) -> None:
        from icdpo_eval.models.parallel import process_state

        self._state = process_state()
        self.rank, self.world = (0, 1) if self._state is None else (self._state.process_index,
                                                                   self._state.num_processes)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self._state.wait_for_everyone()

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world <= 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


# ------------------------------------------------------------------------------------------ the plan
def _dtype_given(args: dict[str, Any]) -> str | None:
    d = args.get("dtype")
    return None if d in (None, "", "auto") else str(d)


def weight_keys(cell: Any, device: str | None) -> list[tuple]:
    """The weights ``cell`` loads, without loading anything: our models say it from their options; an ``hf`` row
    with an explicit ``dtype`` shares our base model's weights (any other model: nothing planned)."""
    from icdpo_eval.config.options import TARGETS, model_class

    args = {k: v for k, v in cell.model_args.items()}
    if cell.model in TARGETS:
        if cell.model == "rm":
            return []
        return model_class(cell.model).weight_keys(args, device)
    if cell.model in ("hf", "hf-auto", "huggingface") and args.get("pretrained") and _dtype_given(args):
        from icdpo_eval.engine import weights_key

        return [weights_key(names.resolve(str(args["pretrained"])), device=device, dtype=_dtype_given(args),
                            revision=args.get("revision"))]
    return []


def uses_reward_model(cell: Any) -> bool:
    from icdpo_eval.config.preflight import our_tasks

    cfg = our_tasks().get(cell.task, {})
    return any(isinstance(m, dict) and m.get("metric") == "rm_reward" for m in cfg.get("metric_list", []))


@dataclass
class CellLog:
    """What one cell did: seconds, the weights it loaded, the documents whose candidates were reused / drawn."""

    seconds: float = 0.0
    loaded: list[str] = field(default_factory=list)
    candidates: dict[str, int] = field(default_factory=dict)

    def line(self, cell: Any) -> str:
        loaded = ", ".join(self.loaded) or "nothing (shared)"
        cand = (f"; candidates of {self.candidates.get('reused', 0)} documents reused, "
                f"{self.candidates.get('sampled', 0)} sampled") if self.candidates else ""
        return f"cell {cell.row} / {cell.task}: {self.seconds:.1f} s, loaded {loaded}{cand}"


def hf_lm(cell: Any, key: tuple) -> Any:
    """An lm-eval ``HFLM`` over the shared weights of ``key`` (the ``hf`` "Base" row)."""
    from lm_eval.models.huggingface import HFLM

    from icdpo_eval.engine import WEIGHTS, load_weights
    from icdpo_eval.runtime import resolve_device, resolve_dtype

    dev = resolve_device(key[2])
    model, tok = WEIGHTS.get(key, lambda: load_weights(key[0], resolve_dtype(_dtype_given(cell.model_args), dev),
                                                        dev, key[3], False, None, False))
    return HFLM(pretrained=model, tokenizer=tok, batch_size=cell.batch_size)


def run_cell(cell: Any, *, isolate: bool = False, shared_hf: bool = True) -> dict[str, Any] | None:
    """Run one cell through lm-eval in this process: lm-eval's results dict with samples (None on ranks > 0)."""
    import icdpo_eval
    from icdpo_eval.config.options import MODELS
    from icdpo_eval.leaderboard.spec import OUTPUTS

    if cell.model == OUTPUTS:
        return score_outputs(cell)
    device = cell.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    args: Any = dict(cell.model_args)
    model: Any = cell.model
    if isolate and cell.model in MODELS:  # sample everything afresh: no stored candidates, no journal
        for opt in ("reuse_candidates", "resume"):
            if opt in MODELS[cell.model]:
                args[opt] = False
    counted = None
    if shared_hf and settings.world_size() <= 1:  # (isolated: the weights were freed before the cell: loaded afresh)
        keys = weight_keys(cell, device)
        if cell.model in ("hf", "hf-auto", "huggingface") and keys:
            model, args = hf_lm(cell, keys[0]), ""
            counted = keys[0]
    seed = cell.seed
    with counting_hf(model, counted) as spent:
        res = icdpo_eval.evaluate(
            model, [cell.task], args, limit=cell.limit, log_samples=True,
            gen_kwargs=",".join(f"{k}={v}" for k, v in sorted(cell.gen_kwargs.items())) or None,
            metadata=dict(cell.metadata) or None, batch_size=cell.batch_size, device=device, random_seed=seed,
            numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed, bootstrap_iters=0)
    if counted is not None and isinstance(res, dict) and isinstance(res.get("config"), dict):
        from icdpo_eval.models.compute import record, summarise

        n = len((res.get("samples") or {}).get(cell.task) or [])
        if n:  # the cell's counts shared by its documents (lm-eval's HFLM reports none per document)
            rec = record(spent["delta"], spent["seconds"], n)
            res["config"].setdefault("icdpo_eval", {}).setdefault("compute", {})[cell.task] = {
                **summarise([rec] * n), "counted": "per cell (lm-eval's hf model), shared equally by its documents"}
    return res


def score_outputs(cell: Any) -> dict[str, Any]:
    """A spec's ``outputs:`` row on one task: its saved responses matched to the task's documents (every document of
    the spec's limit, unless the row allows partial), scored through lm-eval by the table's RM and judge
    (:mod:`icdpo_eval.outputs.score`); nothing generates."""
    from icdpo_eval.outputs.formats import read
    from icdpo_eval.outputs.matching import match, task_docs
    from icdpo_eval.outputs.score import score_matched

    args = cell.model_args
    rows = read(args["outputs"])
    if args.get("generator") is not None:
        rows = [r for r in rows if r.generator == args["generator"]]
    docs = task_docs(cell.task, cell.metadata)
    limit = int(cell.limit) if isinstance(cell.limit, int) else None
    if isinstance(cell.limit, float):  # a fraction of the task, as lm-eval reads it
        limit = max(1, int(cell.limit * len(docs)))
    matched = match(rows, cell.task, docs, limit=limit, allow_partial=bool(args.get("allow_partial")))
    if len(matched) != 1:
        from icdpo_eval.outputs.formats import OutputsError

        raise OutputsError(f"row {cell.row}: {args['outputs']} holds several generators ({', '.join(matched)}); "
                           "name one with `generator:`")
    (one,) = matched.values()
    return score_matched(one, cell.task, docs, limit=limit, metadata=cell.metadata, source=[args["outputs"]])


@contextmanager
def counting_hf(lm: Any, key: tuple | None) -> Iterator[dict[str, Any]]:
    """Count an lm-eval ``HFLM``'s forward passes (the ``hf`` "Base" row over our shared weights) into the process's
    meter, as the engine counts its own: a generation call with an empty cache is a prefill, one with a cache a
    decode step, and each draws one token per row; a call without a cache (loglikelihood) scores. Yields
    ``{"delta", "seconds"}``, filled when the block ends (reward-model calls of the metric left out; the seconds
    from the first forward pass to the end of the last)."""
    out: dict[str, Any] = {"delta": {}, "seconds": 0.0}
    if key is None:
        yield out
        return
    from icdpo_eval.engine import model_label
    from icdpo_eval.engine.loading import CACHE_ARG
    from icdpo_eval.runtime import METER

    label = model_label(key)

    span: list[float] = []  # the first forward pass's start, the last one's end: the seconds spent generating

    def done(*_: Any) -> None:
        span[1:] = [time.perf_counter()]

    def hook(_module: Any, args: tuple, kwargs: dict) -> None:
        if not span:
            span.append(time.perf_counter())
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        cache = kwargs.get(CACHE_ARG, kwargs.get("past_key_values"))
        if cache is None:
            METER.add(label, calls=1, score_tokens=ids.numel())
            return
        kind = "decode_tokens" if cache.get_seq_length() > 0 else "prefill_tokens"
        METER.add(label, calls=1, generated_tokens=ids.shape[0], **{kind: ids.numel()})

    snap = METER.snapshot()
    handles = [lm.model.register_forward_pre_hook(hook, with_kwargs=True), lm.model.register_forward_hook(done)]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
        out["seconds"] = span[-1] - span[0] if len(span) == 2 else 0.0
        out["delta"] = {m: c for m, c in METER.since(snap).items() if not m.startswith("rm:")}


def execution_order(cells: list[Any], device: str | None) -> list[Any]:
    """The cells grouped by the weights they share (stable: spec order within a group and between groups by
    first appearance), so that each model's cells run together and it can be freed after them."""
    first: dict[tuple, int] = {}
    groups = []
    for i, c in enumerate(cells):
        keys = weight_keys(c, device)
        g = first.setdefault(tuple(keys[:1]) if keys else ("cell", i), len(first))
        second = first.setdefault(("second", *keys[1:2]), len(first)) if len(keys) > 1 else -1
        groups.append((g, second, i))
    return [cells[i] for _, _, i in sorted(groups)]


class CellRunner:
    """Runs a leaderboard's cells with the plan of the module docstring; ``ensure`` is the per-cell store/reuse."""

    def __init__(self, cells: list[Any], ensure: Callable[..., Any], *, isolate: bool = False,
                 procs: Processes | None = None) -> None:
        self.cells = cells
        self.ensure = ensure
        self.isolate = isolate
        self.procs = procs or Processes()
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.logs: dict[tuple[str, str], CellLog] = {}

    def run(self, done: Callable[[Any], bool]) -> dict[tuple[str, str], Any]:
        from icdpo_eval.engine import WEIGHTS, model_label
        from icdpo_eval.judges.reward_model import JUDGE_LOADS, release_judges
        from icdpo_eval.runtime import keep_weights

        order = self.cells if self.isolate else execution_order(self.cells, self.device)
        keys = [set(weight_keys(c, self.device)) for c in order]
        results: dict[tuple[str, str], Any] = {}
        for i, cell in enumerate(order):
            finished = self.procs.agree(done(cell))
            if finished:
                if self.procs.main:
                    results[(cell.row, cell.task)] = self.ensure(cell, run=False)
                continue
            if self.isolate:
                WEIGHTS.retain(set())
                release_judges()
            else:  # free every model no remaining cell needs
                WEIGHTS.retain(set().union(*keys[i:]))
            before, judges_before = len(WEIGHTS.loads), len(JUDGE_LOADS)
            t0 = time.time()
            later = set() if self.isolate else set().union(*keys[i + 1:])  # kept when the scorer loads
            with keep_weights(later):
                res = self.ensure(cell, run=True, runner=lambda c: run_cell(c, isolate=self.isolate))
            log = CellLog(round(time.time() - t0, 1), [model_label(k) for k in WEIGHTS.loads[before:]]
                          + [f"RM {Path(n).name or n}" for n in JUDGE_LOADS[judges_before:]])
            if res is not None:
                log.candidates = dict(getattr(res, "candidates", {}) or {})
                results[(cell.row, cell.task)] = res
            self.logs[(cell.row, cell.task)] = log
            if self.procs.main:
                print(log.line(cell), file=sys.stderr)
            if not any(uses_reward_model(c) for c in order[i + 1:]):
                release_judges()
        WEIGHTS.retain(set())
        return results


def write_log(logs: dict[tuple[str, str], CellLog], path: Path) -> None:
    """``run.json`` beside the tables: per cell, seconds, what it loaded, candidates reused / sampled."""
    path.write_text(json.dumps([{"row": r, "task": t, "seconds": log.seconds, "loaded": log.loaded,
                                 "candidates": log.candidates} for (r, t), log in logs.items()], indent=1))
