"""MRR: rank-set construction, the rank task's loader and metric, end to end with judges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from icdpo_eval.ranking import copeland_order, judge_orders

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
import rank  # noqa: E402  (tasks/rank.py, loaded by path like lm-eval does)
from fake_openai_server import FakeOpenAIServer, Reply, shown_pair  # noqa: E402

LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))
ICDPO_EVAL = str(Path(sys.executable).with_name("icdpo-eval"))


def test_copeland_order_by_points_with_ties_flagged():
    # 2 beats 0 and 1, 0 ties 1: points 0.5, 0.5, 2
    order, tied = copeland_order(3, {(0, 1): "tie", (0, 2): "loss", (1, 2): "loss"})
    assert order == [2, 0, 1] and not tied
    order, tied = copeland_order(3, {(0, 1): "win", (1, 2): "win", (0, 2): "loss"})  # a cycle
    assert tied and order == [0, 1, 2]
    assert copeland_order(3, {(0, 1): "error", (0, 2): "win", (1, 2): "tie"}) == ([0, 1, 2], False)


@pytest.mark.parametrize("scores,best,want", [([3.0, 1.0, 2.0], 0, 1.0), ([3.0, 1.0, 2.0], 2, 0.5),
                                              ([3.0, 1.0, 2.0], 1, 1 / 3), ([1.0, 1.0, 0.0], 0, 0.5)])
def test_reciprocal_rank_hand_computed(scores, best, want):
    assert rank.reciprocal_rank(scores, best) == pytest.approx(want)
    doc = {"judge_best": best}
    assert rank.process_results(doc, [(s, False) for s in scores]) == {"mrr": pytest.approx(want)}


def test_rank_set_loader_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(rank.RANK_ENV, raising=False)
    with pytest.raises(ValueError, match="ICDPO_RANK_SET is not set"):
        rank.rank_set()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "candidates": ["a", "b"], "judge_best": 5}) + "\n")
    monkeypatch.setenv(rank.RANK_ENV, str(bad))
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        rank.rank_set()
    bad.write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: malformed"):
        rank.rank_set()


def test_pairwise_judge_orders_candidates(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ICDPO_JUDGE_CACHE", str(tmp_path / "judge"))

    def longer(body, n):  # prefers the longer response, in whichever position it is shown
        a, b = shown_pair(body)
        return Reply("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")

    with FakeOpenAIServer(longer) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        cands = [["mid size", "the longest answer", "s"], ["aa", "a", "aaa"]]
        orders, tied, name, errors = judge_orders("openai:fake-judge", ["\n\nHuman: q\n\nAssistant:"] * 2, cands)
        assert orders == [[1, 0, 2], [2, 0, 1]] and tied == [False, False] and errors == 0
        assert name.startswith("fake-judge@")
        assert len(srv.requests) == 12  # 2 prompts x 3 pairs x 2 orders


@pytest.mark.slow
def test_rm_scorer_reproduces_rm_judge_ranking(tmp_path):
    """A rank set judged by the proxy RM, ranked by `--model rm` with the same RM: MRR must be 1."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "rank.jsonl"
    subprocess.run([ICDPO_EVAL, "build-rank-set", "--task", "hh_harmless_mini", "--n-docs", "3", "--judge",
                    "rm:proxy", "--max-new-tokens", "12", "--out", str(out)], check=True, env=env,
                   capture_output=True, text=True)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["candidates"]) == 3 for r in rows)
    assert rows[0]["provenance"]["judge"].startswith("rm:proxy")
    res_dir = tmp_path / "res"
    for model, args in [("rm", "rm=proxy"), ("icdpo", "scorer=s_hat,max_new_tokens=8")]:
        proc = subprocess.run([LM_EVAL, "--model", model, "--model_args", args, "--tasks", "hh_harmless_rank",
                               "--output_path", str(res_dir / model)], env={**env, "ICDPO_RANK_SET": str(out)},
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (res,) = list((res_dir / model).rglob("results_*.json"))
        mrr = json.loads(res.read_text())["results"]["hh_harmless_rank"]["mrr,none"]
        if model == "rm":
            ties = sum(r["best_tied"] for r in rows)
            assert ties or mrr == pytest.approx(1.0)
        else:
            assert 1 / 3 <= mrr <= 1.0
