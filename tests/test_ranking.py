"""MRR: rank-set construction (listwise / pairwise / RM judges, ties), the rank task's loader and metrics."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from icdpo_eval.data.hh import DataError
from icdpo_eval.prepare.rank_set import RowJudgment, copeland_order, judge_orders, rank_row

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
import rank  # noqa: E402  (tasks/rank.py, loaded by path like lm-eval does)
from _inproc import icdpo_eval, lm_eval  # noqa: E402
from fake_openai_server import (  # noqa: E402
    FakeOpenAIServer,
    Reply,
    is_listwise,
    longest_first,
    shown_candidates,
    shown_pair,
)

Q = "\n\nHuman: q\n\nAssistant:"


@pytest.fixture
def judge_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("ICDPO_JUDGE_CACHE", str(tmp_path / "judge"))


# -- Copeland and ties --------------------------------------------------------------------------------
def test_copeland_order_points_and_best_set():
    # 2 beats 0 and 1, 0 ties 1: points 0.5, 0.5, 2 -> a unique best
    assert copeland_order(3, {(0, 1): "tie", (0, 2): "loss", (1, 2): "loss"}) == ([2, 0, 1], [2])
    # a cycle: 1 point each, all three tied for the best (the order breaks ties by index)
    assert copeland_order(3, {(0, 1): "win", (1, 2): "win", (0, 2): "loss"}) == ([0, 1, 2], [0, 1, 2])
    # 1 and 2 both beat 0 and tie each other: 1.5 each, tied top {1, 2}, 0 last
    assert copeland_order(3, {(0, 1): "loss", (0, 2): "loss", (1, 2): "tie"}) == ([1, 2, 0], [1, 2])
    # an error counts nothing: 0 beats 2 (1 point), 1 ties 2 (0.5 each) -> 0 best alone
    assert copeland_order(3, {(0, 1): "error", (0, 2): "win", (1, 2): "tie"}) == ([0, 1, 2], [0])
    # the lowest index is listed first among tied candidates, but the tie is reported, never resolved
    j = RowJudgment(*copeland_order(3, {(0, 1): "tie", (0, 2): "tie", (1, 2): "tie"}))
    assert j.best == 0 and j.best_tied and j.best_set == [0, 1, 2]


def test_rm_judge_reports_equal_rewards_as_tied(monkeypatch: pytest.MonkeyPatch):
    from icdpo_eval.judges import reward_model

    class FakeRM:
        resolved_name = "fake"

        def score(self, prompts: list[str], responses: list[str]) -> list[float]:
            return [float(len(r)) for r in responses]

    monkeypatch.setattr(reward_model, "get_judge", lambda name, dtype=None, batch_size=8: FakeRM())
    judged, name, errors = judge_orders("rm:fake", [Q, Q], [["aa", "b", "cc"], ["a", "bbb", "cc"]])
    assert name == "rm:fake" and errors == 0
    assert judged[0] == RowJudgment([0, 2, 1], [0, 2]) and judged[0].best_tied  # 2 == 2: tied best
    assert judged[1] == RowJudgment([1, 2, 0], [1]) and not judged[1].best_tied


# -- the MRR task: loader, per-row statuses, exclusion and counts ------------------------------------
@pytest.mark.parametrize("scores,best,want", [([3.0, 1.0, 2.0], 0, 1.0), ([3.0, 1.0, 2.0], 2, 0.5),
                                              ([3.0, 1.0, 2.0], 1, 1 / 3), ([1.0, 1.0, 0.0], 0, 0.5),
                                              # a scorer tie is never resolved in the scorer's favour
                                              ([0.0, 5.0, 5.0], 2, 0.5), ([2.0, 2.0, 2.0], 1, 1 / 3)])
def test_reciprocal_rank_hand_computed(scores, best, want):
    assert rank.reciprocal_rank(scores, best) == pytest.approx(want)
    doc = {"judge_best": best}  # an old-style doc (no status): a unique best
    assert rank.process_results(doc, [(s, False) for s in scores]) == {
        "mrr": pytest.approx(want), "judge_tied": 0, "judge_failed": 0}


def _hand_built_rows() -> list[dict[str, Any]]:
    prov = {"judge": "hand"}
    return [
        rank_row("ok-a", Q, ["a", "bb", "ccc"], RowJudgment([2, 1, 0], [2]), "hh_harmless", prov),
        rank_row("ok-b", Q, ["a", "bb", "ccc"], RowJudgment([0, 1, 2], [0]), "hh_harmless", prov),
        rank_row("tied", Q, ["a", "bb", "ccc"], RowJudgment([1, 2, 0], [1, 2]), "hh_harmless", prov),
        rank_row("failed", Q, ["a", "bb", "ccc"], RowJudgment(None, []), "hh_harmless", prov),
        {"id": "old-ok", "prompt": Q, "candidates": ["xx", "y", "zzz"], "judge_best": 0},  # old format
        {"id": "old-tied", "prompt": Q, "candidates": ["xx", "y", "zzz"], "judge_best": 0, "best_tied": True},
    ]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rank_set_statuses_and_backward_compat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rows = _hand_built_rows()
    assert rows[3]["judge_order"] is None and rows[3]["judge_best"] is None and rows[3]["judge_best_set"] == []
    assert rows[2]["best_tied"] is True and rows[2]["judge_best"] == 1 and rows[2]["judge_best_set"] == [1, 2]
    docs = list(rank.rank_set(rank_set=str(_write(tmp_path / "rank.jsonl", rows)))["test"])
    assert [d["judge_status"] for d in docs] == ["ok", "ok", "tied", "failed", "ok", "tied"]
    assert [d["judge_best"] for d in docs] == [2, 0, 1, 0, 0, 0]  # failed: placeholder 0
    assert [d["judge_best_set"] for d in docs] == [[2], [0], [1, 2], [], [0], [0]]


def test_mrr_excludes_tied_and_failed_rows_with_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    docs = list(rank.rank_set(rank_set=str(_write(tmp_path / "rank.jsonl", _hand_built_rows())))["test"])
    # the scorer: longer candidate = higher score
    per_doc = [rank.process_results(d, [(float(len(c)), False) for c in d["candidates"]]) for d in docs]
    # ok-a: best "ccc" ranked 1st -> 1; ok-b: best "a" ranked 3rd -> 1/3; old-ok: best "xx" behind "zzz" -> 1/2
    assert [p["mrr"] for p in per_doc] == [1.0, pytest.approx(1 / 3), None, None, 0.5, None]
    assert rank.mrr_aggregate([p["mrr"] for p in per_doc]) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert rank.count_aggregate([p["judge_tied"] for p in per_doc]) == 2
    assert rank.count_aggregate([p["judge_failed"] for p in per_doc]) == 1
    with pytest.raises(DataError, match="none of the 2 rows has a unique judge best"):  # an error, never a NaN
        rank.mrr_aggregate([None, None])


def test_mrr_task_through_lm_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The task YAML end to end in lm-eval, with a scripted LM (no model): the same numbers as by hand."""
    import lm_eval
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager

    from icdpo_eval._lm_eval_hook import tasks_dir

    class LengthLM(LM):
        def loglikelihood(self, requests):  # the longer continuation scores higher
            return [(float(len(r.args[1])), False) for r in requests]

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

        def generate_until(self, requests):
            raise NotImplementedError

    tm = TaskManager(include_path=str(tasks_dir()), include_defaults=False,
                     metadata={"rank_set": str(_write(tmp_path / "rank.jsonl", _hand_built_rows()))})
    res = lm_eval.simple_evaluate(model=LengthLM(), tasks=["hh_harmless_rank"], task_manager=tm,
                                  bootstrap_iters=0)["results"]["hh_harmless_rank"]
    assert res["mrr,none"] == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert res["judge_tied,none"] == 2 and res["judge_failed,none"] == 1


def test_rank_set_loader_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="task setting rank_set is not given"):
        rank.rank_set()
    bad = tmp_path / "bad.jsonl"
    for row in ({"prompt": "x", "candidates": ["a", "b"], "judge_best": 5},
                {"prompt": "x", "candidates": ["a", "b"]},  # no judge_best at all: malformed, not failed
                {"prompt": "x", "candidates": ["a", "b"], "judge_best": 0, "judge_best_set": [1]}):
        bad.write_text(json.dumps(row) + "\n")
        with pytest.raises(DataError, match="bad.jsonl:1: malformed"):
            rank.rank_set(rank_set=str(bad))
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match="bad.jsonl:1: malformed"):
        rank.rank_set(rank_set=str(bad))
    failed = {"prompt": "x", "candidates": ["a", "b"], "judge_best": None}
    bad.write_text(json.dumps(failed) + "\n" + json.dumps(failed) + "\n")
    with pytest.raises(DataError, match="none of its 2 rows has a unique judge best .0 tied, 2 without"):
        rank.rank_set(rank_set=str(bad))  # an all-failed rank set: an error before any model work, not mrr NaN


def test_build_rank_set_fails_loudly_when_the_judge_answers_nothing(judge_env, monkeypatch, tmp_path):
    """Every judge answer unparsable: no rank set is written and the command fails naming the counts."""
    from icdpo_eval.judges.pairwise import JudgeError
    from icdpo_eval.prepare import rank_set as ranking

    monkeypatch.setattr(ranking, "judge_orders", lambda *a, **k: ([RowJudgment(None, [])] * 2, "bad-judge", 2))
    out = tmp_path / "rank.jsonl"
    with pytest.raises(JudgeError, match="ordered only 0 of 2 rows .2 unparsable answers., fewer than --min-judged"):
        ranking.build_rank_set("hh_harmless_mini", str(out), judge="openai:bad", n_docs=2, max_new_tokens=2)
    assert not out.exists()


# -- LLM judges against the fake server ----------------------------------------------------------------
def test_pairwise_protocol_orders_candidates(judge_env, monkeypatch):
    def longer(body, n):  # prefers the longer response, in whichever position it is shown
        a, b = shown_pair(body)
        return Reply("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")

    with FakeOpenAIServer(longer) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        cands = [["mid size", "the longest answer", "s"], ["aa", "a", "aaa"], ["xx", "yy", "z"]]
        judged, name, errors = judge_orders("openai:fake-judge", [Q] * 3, cands, protocol="pairwise")
        assert [j.order for j in judged] == [[1, 0, 2], [2, 0, 1], [0, 1, 2]] and errors == 0
        assert [j.best_set for j in judged] == [[1], [2], [0, 1]]  # "xx" and "yy" tie: both 1.5 points
        assert name == "fake-judge@v1"
        assert len(srv.requests) == 18  # 3 prompts x 3 pairs x 2 orders


def test_listwise_protocol_one_request_per_prompt(judge_env, monkeypatch):
    with FakeOpenAIServer(lambda body, n: Reply(longest_first(body))) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        cands = [["mid size", "the longest answer", "s"], ["aa", "a", "aaa"]]
        judged, name, errors = judge_orders("openai:fake-judge", [Q, Q + " 2"], cands)  # listwise: the default
        assert [j.order for j in judged] == [[1, 0, 2], [2, 0, 1]] and errors == 0
        assert [j.best_set for j in judged] == [[1], [2]] and name == "fake-judge@list-v1/listwise"
        assert len(srv.requests) == 2 and all(is_listwise(b) for b in srv.requests)
        # candidates are shown in their own order, labelled [1] [2] [3]
        assert sorted(shown_candidates(b) for b in srv.requests) == sorted(cands)  # requests run concurrently
        # a rerun is answered from the verdict cache
        judge_orders("openai:fake-judge", [Q, Q + " 2"], cands)
        assert len(srv.requests) == 2


def test_listwise_unparsable_row_is_a_judge_error(judge_env, monkeypatch):
    def respond(body, n):  # prompt "bad" never gets a valid ranking; "tie" answers with a tie once
        user = body["messages"][1]["content"]
        if "bad" in user:
            return Reply("1 = 2 > 3")
        return Reply("1 > 3 > 2" if len(body["messages"]) > 2 else "1 = 3 > 2")

    with FakeOpenAIServer(respond) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        judged, _, errors = judge_orders("openai", [Q + " bad", Q + " tie"], [["a", "b", "c"], ["d", "e", "f"]])
        assert judged[0] == RowJudgment(None, []) and judged[1] == RowJudgment([0, 2, 1], [0])
        assert errors == 1 and len(srv.requests) == 4  # each prompt re-asked once


def test_rm_scorer_reproduces_rm_judge_ranking(tmp_path):
    """A rank set judged by the proxy RM, ranked by `--model rm` with the same RM: MRR must be exactly 1 on
    the rows with a unique best; for `--model icdpo` the MRR must equal the one recomputed from its logged
    per-candidate scores. In this process, on the tiny twins (the proxy RM fits on the SBERT twin)."""
    out = tmp_path / "rank.jsonl"
    icdpo_eval("build-rank-set", "--task", "hh_harmless_mini", "--n-docs", "3", "--judge", "rm:proxy",
               "--max-new-tokens", "12", "--out", str(out)).ok()
    assert json.loads(out.read_text().splitlines()[0])["provenance"]["model_args"]["dialogue"] == "pro"
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["candidates"]) == 3 for r in rows)
    assert rows[0]["provenance"]["judge"].startswith("rm:proxy") and rows[0]["provenance"]["protocol"] == "reward"
    ties = sum(r["best_tied"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert all(r["judge_best_set"][0] == r["judge_best"] for r in rows)
    for model, args in [("rm", "rm=proxy"), ("icdpo", "scorer=s_hat,max_new_tokens=8")]:
        run = lm_eval("--model", model, "--model_args", args, "--tasks", "hh_harmless_rank", "--log_samples",
                      "--output_path", str(tmp_path / "res" / model),
                      "--metadata", json.dumps({"rank_set": str(out)})).ok()
        metrics = run.results["results"]["hh_harmless_rank"]
        assert metrics["judge_tied,none"] == ties and metrics["judge_failed,none"] == 0
        rrs = []
        samples = run.samples["hh_harmless_rank"]
        assert sorted(s["doc"]["id"] for s in samples) == sorted(by_id)
        for s in samples:
            scores = [float(r[0]) for r in s["filtered_resps"]]
            if model == "rm":  # the judge's own RM: its scores order every row exactly as the judge did
                judged = by_id[s["doc"]["id"]]
                assert sorted(range(3), key=lambda c: (-scores[c], c)) == judged["judge_order"], scores
                assert [c for c in range(3) if scores[c] == max(scores)] == sorted(judged["judge_best_set"])
            if s["doc"]["judge_status"] == "ok":
                rrs.append(rank.reciprocal_rank(scores, s["doc"]["judge_best"]))
        assert len(rrs) == 3 - ties and rrs, "no row with a unique best: the MRR checks below would be vacuous"
        if model == "rm":
            assert rrs == [1.0] * len(rrs) and metrics["mrr,none"] == 1.0  # its own unique best ranked first
        assert metrics["mrr,none"] == pytest.approx(sum(rrs) / len(rrs))
