"""Scoring saved outputs vs generating them, and the policy freed before the scorer loads, each in its own process.

    python benchmarks/score.py                       # ICDPO on hh_harmless_mini, 4 documents, the embedded models
    python benchmarks/score.py --limit 8 --json

1. ``lm_eval --model icdpo --tasks TASK --limit N --output_path RUN --log_samples`` (a fresh journal: it generates);
2. ``icdpo-eval score RUN --task TASK --out SCORED``: the same metrics from the saved responses;
   for each: wall seconds and peak RSS of the process, and whether ``rm_reward`` agrees (to 1e-6);
3. the same generation run twice more in a child process through the Python API, once with the model given by name
   (lm-eval builds it: its weights are freed before the reward model loads) and once as a model object the caller
   holds (nothing is freed), printing the process's RSS at the moment the reward model loads (``rm_cache=false``, so
   it does load). The proxy RM (a MiniLM) is small: what freeing saves is the policy's share at that moment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, psutil
import icdpo_eval
from icdpo_eval.judges import reward_model as R
seen = {}
real = R.get_judge
def spy(*a, **k):
    seen.setdefault("rss_at_rm_load_gb", psutil.Process().memory_info().rss / 2**30)
    return real(*a, **k)
R.get_judge = spy
task, limit, by_name = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "name"
meta = {"rm": "proxy", "rm_cache": False}
if by_name:
    res = icdpo_eval.evaluate("icdpo", [task], "max_new_tokens=32", limit=limit, metadata=meta, log_samples=False)
else:
    from icdpo_eval.models.icdpo import ICDPOLM
    lm = ICDPOLM(max_new_tokens=32)
    res = icdpo_eval.evaluate(lm, [task], limit=limit, metadata=meta, log_samples=False)
seen["rm_reward"] = res["results"][task]["rm_reward,none"]
print("RESULT " + json.dumps(seen))
"""


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB, output) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{out[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 2**20, out  # ru_maxrss: KiB on Linux


def reward_of(folder: Path, task: str) -> float:
    res = sorted(folder.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)[-1]
    return float(json.loads(res.read_text())["results"][task]["rm_reward,none"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="hh_harmless_mini")
    ap.add_argument("--limit", "--n-docs", type=int, default=4, dest="limit")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="score_bench_"))
    env = {**os.environ, "ICDPO_JOURNAL_DIR": str(tmp / "journal"), "HF_HUB_OFFLINE": "1"}
    bindir = Path(sys.executable).parent
    meta = json.dumps({"rm": "proxy"})
    gen_s, gen_gb, _ = measured([str(bindir / "lm_eval"), "--model", "icdpo", "--model_args",
                                 f"max_new_tokens={a.max_new_tokens},reuse_candidates=false", "--tasks", a.task,
                                 "--limit", str(a.limit), "--metadata", meta, "--output_path", str(tmp / "run"),
                                 "--log_samples"], env)
    sc_s, sc_gb, _ = measured([str(bindir / "icdpo-eval"), "score", str(tmp / "run"), "--task", a.task,
                                    "--metadata", meta, "--out", str(tmp / "scored")], env)
    same = abs(reward_of(tmp / "run", a.task) - reward_of(tmp / "scored", a.task)) <= 1e-6
    child = CHILD.replace("max_new_tokens=32", f"max_new_tokens={a.max_new_tokens}").replace(
        "ICDPOLM(max_new_tokens=32)", f"ICDPOLM(max_new_tokens={a.max_new_tokens})")
    rss = {}
    for mode in ("name", "object"):
        env_m = {**env, "ICDPO_JOURNAL_DIR": str(tmp / f"journal-{mode}")}
        _, peak, out = measured([sys.executable, "-c", child, a.task, str(a.limit), mode], env_m)
        line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
        rss[mode] = {**json.loads(line.removeprefix("RESULT ")), "peak_rss_gb": peak}
    res = {"task": a.task, "limit": a.limit, "max_new_tokens": a.max_new_tokens,
           "generate": {"seconds": round(gen_s, 1), "peak_rss_gb": round(gen_gb, 2)},
           "score": {"seconds": round(sc_s, 1), "peak_rss_gb": round(sc_gb, 2), "same_rm_reward": same},
           "score_vs_generate_seconds": round(sc_s / gen_s, 3),
           "freed_before_scoring": {m: {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}
                                    for m, d in rss.items()},
           "machine": f"{os.cpu_count()} CPUs"}
    if a.json:
        print(json.dumps(res, indent=1))
        return
    g, s, f = res["generate"], res["score"], res["freed_before_scoring"]
    print(f"{a.task}, {a.limit} documents, {a.max_new_tokens} new tokens:")
    print(f"  generate (lm_eval --model icdpo): {g['seconds']} s, peak RSS {g['peak_rss_gb']} GB")
    print(f"  score the saved responses:        {s['seconds']} s, peak RSS {s['peak_rss_gb']} GB "
          f"({res['score_vs_generate_seconds']}x the run's time); same rm_reward: {s['same_rm_reward']}")
    print(f"  RSS when the reward model loads: {f['object']['rss_at_rm_load_gb']} GB with the policy held by the "
          f"caller, {f['name']['rss_at_rm_load_gb']} GB with it freed (peak RSS {f['object']['peak_rss_gb']} / "
          f"{f['name']['peak_rss_gb']} GB)")


if __name__ == "__main__":
    main()
