#!/usr/bin/env bash
# Regenerate the committed CI baselines after a DELIBERATE change of behaviour (docs/leaderboard.md):
# reruns the mini leaderboard (the trained adapters stay cached unless the training code changed) and
# copies its table and its per-document outputs over the committed files. Review `git diff leaderboards/`
# (which rows, documents and rewards moved) before committing it.
#   usage: scripts/regenerate_baselines.sh [OUT_DIR]   (default: lb)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-lb}
icdpo-eval leaderboard leaderboards/mini.yaml --out "$out" --rerun
cp "$out/leaderboard.csv" leaderboards/baseline_mini.csv
cp "$out/documents.jsonl" leaderboards/baseline_mini_docs.jsonl
git --no-pager diff --stat -- leaderboards/ || true
