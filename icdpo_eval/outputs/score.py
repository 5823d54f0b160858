"""``icdpo-eval score INPUT... --task T --out DIR``: saved responses scored by a task's metrics, no policy loaded.

Every input is read (:mod:`icdpo_eval.outputs.formats`), its rows matched to the task's documents
(:mod:`icdpo_eval.outputs.matching`), and each generator's responses handed to lm-eval as the responses of a model
that only replays them (:class:`SavedOutputsLM`): lm-eval computes the task's metrics exactly as in a run (the reward
model, the win-rate judge, length; LC in the leaderboard) and writes its own results JSON, one folder per generator
under ``DIR`` (``DIR/<generator>/results_<date>.json``, with ``--log_samples`` the samples beside it), which
``icdpo-eval compare``, the gates and ``icdpo-eval report`` read. ``config.icdpo_eval.score`` records the inputs and
the matching counts. Scores already computed are reused (the RM score cache and the judge's verdict cache, by
(model, prompt, response)): rescoring with a second reward model pays only that model. Docs: docs/score.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from lm_eval.api.model import LM

from icdpo_eval.outputs.formats import OutputsError, read
from icdpo_eval.outputs.matching import Matched, match, task_docs


class SavedOutputsLM(LM):
    """An lm-eval model that generates nothing: each ``generate_until`` request gets the saved response of its
    document (by doc id, checked against the document's prompt)."""

    def __init__(self, matched: Matched, docs: list[dict[str, Any]], doc_ids: list[int], source: list[str]) -> None:
        super().__init__()
        self.matched, self.docs, self.doc_ids, self.source = matched, docs, doc_ids, source

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        positional = self.doc_ids != list(range(len(self.doc_ids)))
        for req in requests:
            doc_id = self.doc_ids[req.doc_id] if positional else req.doc_id
            if req.doc is not None and req.doc.get("prompt") != self.docs[doc_id].get("prompt"):
                raise RuntimeError(f"saved outputs: lm-eval's document {req.doc_id} is not document {doc_id}")
            out.append(self.matched.responses[doc_id])
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise OutputsError("saved responses have no log-likelihoods: score them with a generation task")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise OutputsError("saved responses have no log-likelihoods: score them with a generation task")

    def get_model_info(self) -> dict[str, Any]:
        return {"method": "outputs", "generator": self.matched.generator, "source": self.source}


def score_matched(matched: Matched, task: str, docs: list[dict[str, Any]], *, limit: int | None,
                  metadata: dict[str, Any] | None, source: list[str], tracker: Any = None) -> dict[str, Any]:
    """One generator's responses through lm-eval (``limit`` documents, else exactly the matched ones)."""
    import icdpo_eval

    ids = sorted(matched.responses)
    lm = SavedOutputsLM(matched, docs, ids, source)
    where = {"limit": len(ids)} if ids == list(range(len(ids))) else {"samples": {task: ids}}
    res = icdpo_eval.evaluate(lm, [task], log_samples=True, metadata=dict(metadata or {}) or None,
                              bootstrap_iters=0, evaluation_tracker=tracker, **where)
    if isinstance(res, dict):
        res.setdefault("config", {})["model"] = "outputs"
        res["config"]["model_args"] = {"generator": matched.generator}
        res["config"].setdefault("icdpo_eval", {})["score"] = {
            "source": source, "generator": matched.generator, "counts": dict(matched.counts),
            "policy_loaded": False, "limit": limit}
    return res


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", name).strip("_")[:120] or "outputs"


def run(inputs: list[str], task: str, out: Path | None, *, metadata: dict[str, Any] | None = None,
        limit: int | None = None, allow_partial: bool = False, log_samples: bool = False) -> dict[str, dict]:
    """Score every generator of ``inputs`` on ``task``; write lm-eval's files under ``out``; generator -> results."""
    from lm_eval.loggers import EvaluationTracker

    from icdpo_eval.config import options

    options.TASK_SETTINGS.parse(dict(metadata or {}), where="--metadata")  # a bad task setting: one line, now
    rows = [r for path in inputs for r in read(path)]
    docs = task_docs(task, metadata)
    matched = match(rows, task, docs, limit=limit, allow_partial=allow_partial)
    results = {}
    for gen, m in matched.items():
        tracker = EvaluationTracker(output_path=str(out)) if out is not None else None
        t0 = time.perf_counter()
        res = score_matched(m, task, docs, limit=limit, metadata=metadata, source=[str(p) for p in inputs],
                            tracker=tracker)
        if tracker is not None and isinstance(res, dict):
            tracker.general_config_tracker.model_name_sanitized = _safe(gen)
            samples = res.pop("samples", None)
            tracker.save_results_aggregated(results=res, samples=samples if log_samples else None)
            if log_samples and samples:
                for name in res.get("configs", {}):
                    tracker.save_results_samples(task_name=name, samples=samples[name])
            res["samples"] = samples
        c = m.counts
        print(f"score: {gen}: {c['matched']} responses scored on {task} in {time.perf_counter() - t0:.1f} s "
              f"({c['empty']} empty, {c['unmatched']} unmatched, {c['duplicated']} duplicated, {c['missing']} "
              f"missing, {c['outside_limit']} outside --limit)", file=sys.stderr)
        results[gen] = res
    return results


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("score", help="score saved responses with a task's metrics, loading no policy model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="saved outputs: lm-eval --log_samples folders, leaderboard folders or "
                   "documents.jsonl, journal folders, JSONL / JSON of {prompt|doc_id, response[, generator]}, the "
                   "released ICDPO code's output JSONL")
    p.add_argument("--task", required=True, help="the generation task whose metrics score them (hh_harmless, "
                   "hh_harmless_winrate, hh_harmless_mini, ...)")
    p.add_argument("--out", default=None, help="folder for lm-eval's results (one subfolder per generator)")
    p.add_argument("--metadata", default=None, help="task settings as JSON, as lm_eval --metadata (e.g. "
                   "'{\"rm\": \"proxy\"}'; docs/options.md)")
    p.add_argument("--limit", type=int, default=None, help="the first N documents, each of which must have a "
                   "response (default: exactly the documents the inputs name)")
    p.add_argument("--allow-partial", action="store_true", help="score what matched instead of failing on an "
                   "unmatched, duplicated or missing document (the counts go into the results)")
    p.add_argument("--log_samples", "--log-samples", action="store_true", dest="log_samples",
                   help="write the per-sample rewards and verdicts beside the results")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    import json

    metadata = None
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except json.JSONDecodeError as exc:
            raise OutputsError(f"--metadata: not JSON ({exc.msg}); e.g. --metadata '{{\"rm\": \"proxy\"}}'") from None
        if not isinstance(metadata, dict):
            raise OutputsError("--metadata: give a JSON object of task settings")
    if args.limit is not None and args.limit < 1:
        raise OutputsError(f"--limit {args.limit}: give a positive number of documents")
    out = Path(args.out) if args.out else None
    results = run(args.inputs, args.task, out, metadata=metadata, limit=args.limit,
                  allow_partial=args.allow_partial, log_samples=args.log_samples)
    from lm_eval.utils import make_table

    for gen, res in results.items():
        print(f"{gen}:")
        print(make_table({k: v for k, v in res.items() if k != "samples"}))
    if out is not None:
        print(f"wrote {out}/<generator>/results_*.json" + (" and samples" if args.log_samples else ""))
    return 0
