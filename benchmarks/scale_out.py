"""Scale-out benchmark: the same lm-eval command with 1 process and with N processes (data parallel).

    python benchmarks/scale_out.py --limit 8 --processes 2 --max-new-tokens 32

Runs ``lm_eval --model icdpo`` (resume=false and reuse_candidates=false, so nothing is read from the journal or
the candidate store; the reward model is the offline proxy, ``--metadata '{"rm": "proxy"}'``) once in one process and
once under ``accelerate launch --multi_gpu --num_processes N`` (which on a machine without CUDA starts N CPU
processes in a gloo group), on the same documents, and prints each run's wall time, documents per minute,
the speed-up, and whether the per-document responses and the metric are identical. Wall time includes
model loading (each process loads its own copy), as a user would see it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(cmd: list[str], out: Path, threads: int) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, "--output_path", str(out)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"scale_out: command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall


def outputs(out: Path, task: str) -> tuple[dict, float]:
    (samples,) = glob.glob(str(out / "*" / f"samples_{task}_*.jsonl"))
    (results,) = glob.glob(str(out / "*" / "results_*.json"))
    docs = {r["doc_id"]: r["filtered_resps"][0] for r in map(json.loads, open(samples))}
    return docs, json.load(open(results))["results"][task]["rm_reward,none"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--task", default="hh_harmless_mini")
    ap.add_argument("--model-args", default="", help="extra --model_args for icdpo (comma-separated)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    model_args = ",".join(x for x in (f"max_new_tokens={a.max_new_tokens}", "resume=false", "reuse_candidates=false",
                                      a.model_args) if x)
    base = ["--model", "icdpo", "--model_args", model_args, "--tasks", a.task, "--limit", str(a.limit),
            "--metadata", '{"rm": "proxy"}', "--log_samples"]
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        one = run([str(BIN / "lm_eval"), *base], Path(tmp) / "one", threads=cores)
        many = run([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(a.processes),
                    "-m", "lm_eval", *base], Path(tmp) / "many", threads=max(1, cores // a.processes))
        docs1, m1 = outputs(Path(tmp) / "one", a.task)
        docsn, mn = outputs(Path(tmp) / "many", a.task)
    res = {"machine": f"{platform.processor() or platform.machine()}, {cores} cores", "documents": a.limit,
           "max_new_tokens": a.max_new_tokens, "processes": a.processes,
           "wall_s_1": round(one, 1), "wall_s_n": round(many, 1),
           "docs_per_min_1": round(60 * a.limit / one, 2), "docs_per_min_n": round(60 * a.limit / many, 2),
           "speedup": round(one / many, 2), "identical_responses": docs1 == docsn, "identical_metric": m1 == mn}
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>20}: {v}")
    return 0 if res["identical_responses"] and res["identical_metric"] else 1


if __name__ == "__main__":
    sys.exit(main())
