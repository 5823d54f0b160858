"""The exactness gate against the committed mini baseline: it reproduces it, and it catches planted regressions,
naming the row: the contrastive scorer's sign flipped (the chosen responses change), and 1e-3 added to every Ŝ
(no choice flips: only the recorded candidate scores show it).

Runs the ICDPO+Ŝ row of ``leaderboards/mini.yaml`` on its first documents in-process (the spec's seed, generation
length and reward model; a document's output depends only on the seed and the document, not on how many documents
run) and compares with the same documents of ``leaderboards/baseline_mini_docs.jsonl``. Real weights: the
committed baseline is the real embedded Gemma-3-270M's output (``scripts/regenerate_baselines.sh``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from icdpo_eval.gates.exact import compare_documents, load_documents
from icdpo_eval.leaderboard import load_spec, run_leaderboard
from icdpo_eval.method.scorers import ContrastiveScorer

pytestmark = [pytest.mark.real, pytest.mark.usefixtures("baseline_threads")]

ROOT = Path(__file__).resolve().parents[1]
ROW = "ICDPO+Ŝ"
DOCS = 1


def _run(out: Path, monkeypatch) -> dict:
    from icdpo_eval.engine import WEIGHTS

    # weights loaded afresh, as CI's leaderboard process loads them: an engine that an earlier test of this worker
    # built on one thread keeps the decode kernels it chose for one thread (seen: last bits moved by 1.5e-5)
    WEIGHTS.retain(set())
    # a journal of its own per run: the planted regression lives in memory, which no journal key can see
    monkeypatch.setenv("ICDPO_JOURNAL_DIR", str(out / "journal"))
    spec = load_spec(ROOT / "leaderboards" / "mini.yaml")
    spec.rows = [r for r in spec.rows if r.name == ROW]
    spec.limit, spec.reference = DOCS, None
    run_leaderboard(spec, out)
    return load_documents(out)


def test_exactness_gate_reproduces_the_baseline_then_catches_planted_changes(tmp_path, monkeypatch):
    base = {k: v for k, v in load_documents(ROOT / "leaderboards" / "baseline_mini_docs.jsonl").items()
            if k[0] == ROW and int(k[2]) < DOCS}
    assert len(base) == DOCS and all("scores" in d and "terms" in d for d in base.values())
    clean = _run(tmp_path / "clean", monkeypatch)
    code, report = compare_documents(clean, base)
    assert code == 0, report  # the committed baseline is reproduced exactly

    score = ContrastiveScorer.score
    monkeypatch.setattr(ContrastiveScorer, "score",
                        lambda self, groups: [[-x for x in row] for row in score(self, groups)])
    code, report = compare_documents(_run(tmp_path / "flipped", monkeypatch), base)
    assert code == 1, report
    assert f"in row(s) {ROW}:" in report and "response differs" in report

    # a shift of every Ŝ by 1e-3 flips no choice: same responses and rewards, only the recorded scores move
    monkeypatch.setattr(ContrastiveScorer, "score",
                        lambda self, groups: [[x + 1e-3 for x in row] for row in score(self, groups)])
    shifted = _run(tmp_path / "shifted", monkeypatch)
    assert all(shifted[k]["response"] == clean[k]["response"] and shifted[k]["index"] == clean[k]["index"]
               for k in base)
    code, report = compare_documents(shifted, base)
    assert code == 1 and "candidate scores differ" in report and "response differs" not in report, report
