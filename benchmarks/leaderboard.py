"""Leaderboard benchmark: the same spec on the plain path (``--isolate``: every cell loads its models afresh and
samples every candidate itself) and on the shared path (the default: each model loaded once, candidates sampled
once and reused by every row whose sampling is the same), one after the other in one session.

    python benchmarks/leaderboard.py                   # leaderboards/mini.yaml, ~6 minutes on a 2-core CPU
    python benchmarks/leaderboard.py --spec leaderboards/mini.yaml --limit 4 --json

Both runs get a fresh candidate store and journal (a temporary cache dir that links the converted embedded
models, retrieval indexes and LM-head choices of the real one), so neither reads what an earlier run sampled;
the spec's adapters are trained once before either run and not timed. Prints, per cell, the seconds and what
it loaded, sampled and scored on each path (from each run's ``run.json``), the wall times and their ratio,
whether the tables (``leaderboard.md``, ``leaderboard.csv``) and ``documents.jsonl`` are identical, and the
time of a rerun of the shared path in the same folder (every cell already done: nothing runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
FRESH = ("candidates.sqlite", "candidates.sqlite-wal", "candidates.sqlite-shm", "journal")


def fresh_cache(real: Path, tmp: Path) -> Path:
    """A cache dir linking every entry of ``real`` except the candidate store and the journal."""
    cache = tmp / "cache"
    cache.mkdir()
    if real.is_dir():
        for entry in real.iterdir():
            if entry.name not in FRESH:
                (cache / entry.name).symlink_to(entry)
    return cache


def run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"leaderboard benchmark: command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall


def cell_table(old: list[dict], new: list[dict]) -> list[str]:
    new_by = {(c["row"], c["task"]): c for c in new}

    def did(c: dict) -> str:
        cand = c.get("candidates") or {}
        what = f"loaded {', '.join(c['loaded']) or 'nothing'}"
        if cand:
            what += f"; candidates reused {cand.get('reused', 0)}, sampled {cand.get('sampled', 0)}"
        return what

    lines = ["| cell | plain s | shared s | plain path | shared path |", "|---|---:|---:|---|---|"]
    for c in old:
        n = new_by.get((c["row"], c["task"]), {})
        lines.append(f"| {c['row']} / {c['task']} | {c['seconds']:.1f} | {n.get('seconds', float('nan')):.1f} | "
                     f"{did(c)} | {did(n) if n else '-'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="leaderboards/mini.yaml")
    ap.add_argument("--limit", type=int, default=None, help="override the spec's limit (documents per cell)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    a = ap.parse_args(argv)
    from icdpo_eval.config import settings

    extra = ["--limit", str(a.limit)] if a.limit else []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "ICDPO_CACHE_DIR": str(fresh_cache(settings.cache_dir(), tmp)),
               "ICDPO_JOURNAL_DIR": str(tmp / "journal")}
        env.pop("ICDPO_JUDGE_CACHE", None)
        code = ("import sys; from icdpo_eval.leaderboard import load_spec, prepare_adapters; "
                "prepare_adapters(load_spec(sys.argv[1]))")
        run([sys.executable, "-c", code, a.spec], env)  # adapters: trained once, not timed
        lb = [str(BIN / "icdpo-eval"), "leaderboard", a.spec, *extra]
        plain = run([*lb, "--out", str(tmp / "plain"), "--isolate"], env)
        shared = run([*lb, "--out", str(tmp / "shared")], env)
        new = json.loads((tmp / "shared" / "run.json").read_text())  # before the rerun rewrites it
        rerun = run([*lb, "--out", str(tmp / "shared")], env)
        from icdpo_eval.leaderboard.tables import without_seconds  # every count compared, the seconds not

        same = {f: without_seconds(tmp / "plain" / f) == without_seconds(tmp / "shared" / f)
                for f in ("leaderboard.md", "leaderboard.csv", "documents.jsonl")}
        old = json.loads((tmp / "plain" / "run.json").read_text())

    def loads(cells: list[dict]) -> int:
        return sum(len(c["loaded"]) for c in cells)

    def sampled(cells: list[dict]) -> int:
        return sum((c.get("candidates") or {}).get("sampled", 0) for c in cells)

    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "spec": a.spec,
           "limit": a.limit, "cells": len(old), "wall_s_plain": round(plain, 1), "wall_s_shared": round(shared, 1),
           "ratio_shared_vs_plain": round(shared / plain, 3), "wall_s_rerun": round(rerun, 1),
           "model_loads_plain": loads(old), "model_loads_shared": loads(new),
           "documents_sampled_plain": sampled(old), "documents_sampled_shared": sampled(new),
           "documents_reused_shared": sum((c.get("candidates") or {}).get("reused", 0) for c in new),
           **{f"identical_{f.replace('.', '_')}": v for f, v in same.items()}}
    print("\n".join(cell_table(old, new)))
    print(f"\nwall: plain {plain:.1f} s, shared {shared:.1f} s ({shared / plain:.2f}x); rerun of the finished shared "
          f"run {rerun:.1f} s; model loads {res['model_loads_plain']} -> {res['model_loads_shared']}; documents "
          f"sampled {res['documents_sampled_plain']} -> {res['documents_sampled_shared']}; identical outputs: "
          + ", ".join(f"{f} {v}" for f, v in same.items()))
    if a.json:
        print(json.dumps(res))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
