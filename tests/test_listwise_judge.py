"""Listwise LLM judge (the MRR ground truth): strict parsing, re-ask, retries and cache on the fake server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fake_openai_server import FakeOpenAIServer, Reply, is_listwise, longest_first, shown_candidates

from icdpo_eval.judges.listwise import LIST_REASK, ListwiseJudge, example, parse_ranking
from icdpo_eval.judges.pairwise import JudgeError

FAST = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ICDPO_JUDGE_CACHE", str(tmp_path / "judge"))
    for var in ("OPENAI_BASE_URL", "ICDPO_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)


def make_judge(srv: FakeOpenAIServer, tmp_path: Any, **kw: Any) -> ListwiseJudge:
    return ListwiseJudge(base_url=srv.base_url, cache=tmp_path / "c.sqlite", **{**FAST, **kw})


@pytest.mark.parametrize("text,want", [
    ("2 > 1 > 3", [1, 0, 2]), ("2>1>3", [1, 0, 2]), ("  3 >  2 > 1 ", [2, 1, 0]), ("2, 3, 1", [1, 2, 0]),
    ("Ranking: 1 > 2 > 3", [0, 1, 2]), ("ranking: 3 > 1 > 2.", [2, 0, 1]), ("**2 > 3 > 1**", [1, 2, 0]),
    ("[2] > [1] > [3]", [1, 0, 2]), ("`1 > 3 > 2`", [0, 2, 1]), ("Final answer: 3, 2, 1", [2, 1, 0]),
    ("I compared them carefully.\n2 > 1 > 3", [1, 0, 2]),
    ("", None), (None, None), ("2 > 1", None), ("2 > 1 > 3 > 4", None), ("2 > 2 > 3", None),
    ("1 = 2 > 3", None), ("2 = 1 = 3", None), ("0 > 1 > 2", None), ("B > A > C", None),
    ("2 is best, then 1, then 3", None), ("2 > 1 > 3\nactually not sure", None), ("213", None),
])
def test_parse_ranking_is_strict(text: str | None, want: list[int] | None) -> None:
    assert parse_ranking(text, 3) == want


def test_example_and_two_candidates() -> None:
    assert example(3) == "2 > 1 > 3" and example(2) == "2 > 1"
    assert parse_ranking("2 > 1", 2) == [1, 0] and parse_ranking("1 > 2 > 3", 2) is None


def test_one_request_per_prompt_prompt_and_name(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    srv = serve(lambda body, n: Reply(longest_first(body)))
    judge = make_judge(srv, tmp_path, max_workers=1)
    out = judge.rank(["\n\nHuman: q\n\nAssistant:"], [["mid", "longest one", "s"]])
    assert [r.order for r in out] == [[1, 0, 2]] and out[0].error is None
    assert len(srv.requests) == 1 and judge.name == "gpt-4@list-v1/listwise"
    body = srv.requests[0]
    assert is_listwise(body) and shown_candidates(body) == ["mid", "longest one", "s"]
    assert body["temperature"] == 0 and "Ties are not allowed" in body["messages"][1]["content"]
    assert "2 > 1 > 3" in body["messages"][1]["content"]  # the format example


def test_reask_once_then_error_and_only_parsed_answers_cached(serve: Callable[..., FakeOpenAIServer],
                                                             tmp_path: Any) -> None:
    def respond(body: dict[str, Any], n: int) -> Reply:
        cs = shown_candidates(body)
        if cs[0] == "ok":  # garbage, then a valid ranking after the re-ask
            return Reply("3 > 1 > 2" if body["messages"][-1]["content"].startswith("Your reply") else "they tie")
        return Reply("1 > 1 > 2")

    srv = serve(respond)
    judge = make_judge(srv, tmp_path, max_workers=1)
    ok, bad = judge.rank(["p1", "p2"], [["ok", "b", "c"], ["bad", "b", "c"]], ids=["d1", "d2"])
    assert ok.order == [2, 0, 1] and bad.order is None and "d2" in (bad.error or "")
    assert len(srv.requests) == 4 and judge.stats.reasks == 2
    reask = next(b for b in srv.requests if len(b["messages"]) == 4)
    assert [m["role"] for m in reask["messages"]] == ["system", "user", "assistant", "user"]
    assert reask["messages"][-1]["content"] == LIST_REASK.format(example="2 > 1 > 3")
    again = make_judge(srv, tmp_path)
    again.rank(["p1", "p2"], [["ok", "b", "c"], ["bad", "b", "c"]])
    assert again.stats.cache_hits == 1 and len(srv.requests) == 6  # only the failed prompt is asked again


def test_cache_key_includes_candidate_order(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    srv = serve(lambda body, n: Reply(longest_first(body)))
    make_judge(srv, tmp_path).rank(["p"], [["a", "bb", "ccc"]])
    judge = make_judge(srv, tmp_path)
    assert judge.rank(["p"], [["a", "bb", "ccc"]])[0].order == [2, 1, 0] and len(srv.requests) == 1
    assert judge.rank(["p"], [["ccc", "bb", "a"]])[0].order == [0, 1, 2] and len(srv.requests) == 2


def test_retries_then_loud_failure(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    script = {0: Reply(status=429, headers={"Retry-After": "0"}), 1: Reply(status=503)}
    srv = serve(lambda body, n: script.get(n, Reply("1 > 2 > 3")))
    judge = make_judge(srv, tmp_path, max_workers=1)
    assert judge.rank(["p"], [["a", "b", "c"]])[0].order == [0, 1, 2]
    assert judge.stats.retries == 2 and len(srv.requests) == 3
    down = serve(lambda body, n: Reply(status=500))
    with pytest.raises(JudgeError, match=r"item x7: failed after 2 tries.*HTTP 500"):
        make_judge(down, tmp_path, max_tries=2).rank(["q"], [["a", "b", "c"]], ids=["x7"])
