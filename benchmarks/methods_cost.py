"""What each inference-time method costs per document, next to ICDPO's, on the same documents in one process.

    python benchmarks/methods_cost.py     # hh_harmless (../shared/data), documents 100, 300, 500, 700, 64 tokens
    python benchmarks/methods_cost.py --task hh_harmless_mini --docs 50,60,70 --max-new-tokens 32 --json

Every method runs through lm-eval (``icdpo_eval.evaluate``) on the embedded models, offline, with the proxy RM:
ICDPO (S), RM-BoN, weak-to-strong search (guided by the mini leaderboard's DPO adapter over the base, trained once
and cached, not timed), URIAL (our prefix) and ARGS (the proxy RM). Each model is loaded and warmed on one document
before it is timed, and a fresh journal and candidate store are used, so nothing is resumed or reused. Prints, per
method: seconds per document and, from the engines' own counters (``Engine.counts``, every model a method runs: base,
guide, teacher), forward calls and forward token positions per document, and ARGS's reward-model calls.
The embedded 270M base shows what each method spends, not what it buys: its rewards say nothing about the methods.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def engines_of(lm) -> list:
    out = [getattr(lm, "engine", None)]
    scorer = getattr(lm, "scorer", None)
    out += [getattr(scorer, "tuned", None), getattr(scorer, "untuned", None)]
    teacher = getattr(lm, "teacher", None)
    out.append(getattr(teacher, "engine", None))
    seen, uniq = set(), []
    for e in out:
        if e is not None and id(e) not in seen:
            seen.add(id(e))
            uniq.append(e)
    return uniq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="hh_harmless")
    ap.add_argument("--docs", default="100,300,500,700",
                    help="the documents timed (indices of the task's rows; the first of the task warms each model up)")
    ap.add_argument("--n-docs", type=int, default=None, help="time only the first N of --docs")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
                    help="ICDPO_DATA_DIR: the datasets' local folder (default ../shared/data; '' = the hub)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    docs = [int(x) for x in a.docs.split(",") if x.strip()][:a.n_docs]
    if a.data_dir:
        os.environ["ICDPO_DATA_DIR"] = a.data_dir

    tmp = Path(tempfile.mkdtemp(prefix="methods_cost_"))
    os.environ["ICDPO_JOURNAL_DIR"] = str(tmp / "journal")  # nothing resumed
    import icdpo_eval
    from icdpo_eval.config.options import model_class
    from icdpo_eval.leaderboard.adapters import prepare_adapters
    from icdpo_eval.leaderboard.spec import load_spec

    root = Path(__file__).resolve().parents[1]
    dpo = prepare_adapters(load_spec(root / "leaderboards" / "mini.yaml"))["dpo"]
    common = {"max_new_tokens": a.max_new_tokens, "reuse_candidates": False, "resume": False}
    methods = {
        # demos from the vendored pool: the hub's train split is not needed offline
        "ICDPO (S)": ("icdpo", {"scorer": "s", "demo_pool": str(root / "icdpo_eval" / "data" / "hh_harmless_mini"
                                                                / "pool.jsonl")}),
        "RM-BoN": ("rm_bon", {}),
        "W2S": ("w2s", {"tuned": str(dpo)}),
        "URIAL": ("urial", {}),
        "ARGS": ("args", {}),
    }
    rows = []
    for label, (model, extra) in methods.items():
        args = {**common, **extra}
        if model in ("w2s", "urial", "args"):
            args.pop("reuse_candidates")
        lm = model_class(model)(**args)
        run = dict(tasks=[a.task], metadata={"rm": "proxy"}, log_samples=False, bootstrap_iters=0)
        icdpo_eval.evaluate(lm, samples={a.task: [0]}, **run)  # warm-up (kernel probes, the proxy RM, the retriever)
        before = [dict(e.counts) for e in engines_of(lm)]
        rm_calls = 0
        for judge in getattr(lm, "_judges", {}).values():  # ARGS's guiding RM (loaded by the warm-up)
            def counted(prompts, responses, _score=judge.score):
                nonlocal rm_calls
                rm_calls += len(responses)
                return _score(prompts, responses)

            judge.score = counted
        os.environ["ICDPO_JOURNAL_DIR"] = str(tmp / f"journal-{model}")
        t0 = time.perf_counter()
        icdpo_eval.evaluate(lm, samples={a.task: docs}, **run)
        wall = time.perf_counter() - t0
        n = len(docs)
        after = [dict(e.counts) for e in engines_of(lm)]
        calls = sum(x.get("forward_calls", 0) - b.get("forward_calls", 0) for x, b in zip(after, before))
        tokens = sum(x.get("forward_tokens", 0) - b.get("forward_tokens", 0) for x, b in zip(after, before))
        rows.append({"method": label, "model": model, "seconds_per_doc": wall / n, "forward_calls_per_doc": calls / n,
                     "forward_tokens_per_doc": tokens / n, "rm_calls_per_doc": rm_calls / n,
                     "prefix_prefills": sum(x.get("prefix_prefills", 0) for x in after)})
        print(f"{label}: {wall / n:.2f} s/doc", flush=True)
    base = rows[0]
    for r in rows:
        r["seconds_vs_icdpo"] = r["seconds_per_doc"] / base["seconds_per_doc"]
    info = {"task": a.task, "documents": docs, "max_new_tokens": a.max_new_tokens,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "rows": rows}
    if a.json:
        print(json.dumps(info, indent=2))
        return
    print(f"\n{a.task}, documents {a.docs} (document 0 warmed each model up first), {a.max_new_tokens} new tokens, "
          f"{info['machine']}\n")
    print("| method | s / doc | x ICDPO | forward calls / doc | forward tokens / doc | RM calls / doc |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['seconds_per_doc']:.2f} | {r['seconds_vs_icdpo']:.2f} | "
              f"{r['forward_calls_per_doc']:.0f} | {r['forward_tokens_per_doc']:.0f} | {r['rm_calls_per_doc']:.0f} |")


if __name__ == "__main__":
    main()
