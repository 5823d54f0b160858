"""Pairwise LLM judge + metric ``winrate`` against a local fake OpenAI server (no network, no model)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fake_openai_server import FakeOpenAIServer, Reply, shown_pair

from icdpo_eval.config.options import TASK_SETTINGS
from icdpo_eval.errors import OptionError
from icdpo_eval.judges.cache import VerdictCache
from icdpo_eval.judges.pairwise import (
    REASK,
    JudgeError,
    JudgeSettings,
    MissingAPIKeyError,
    PairwiseJudge,
    combine,
    judge_for,
    parse_verdict,
)

KEY = "sk-test-secret-123"
FAST = {"backoff_base": 0.01, "backoff_cap": 0.05, "timeout": 5.0}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ICDPO_JUDGE_CACHE", str(tmp_path / "judge"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def with_settings(docs: list[dict[str, Any]], **settings: Any) -> list[dict[str, Any]]:
    """The rows as the task loader hands them over: each names its task settings (``--metadata``)."""
    from icdpo_eval.tasks.settings import SETTINGS_FIELD, register_settings

    key = register_settings(TASK_SETTINGS.parse(settings, where="task setting"))
    return [{**d, SETTINGS_FIELD: key} for d in docs]


def make_judge(srv: FakeOpenAIServer, tmp_path: Any, **kw: Any) -> PairwiseJudge:
    return PairwiseJudge(base_url=srv.base_url, cache=tmp_path / "c.sqlite", **{**FAST, **kw})


def scripted(table: dict[tuple[str, str], str]) -> Callable[[dict[str, Any], int], Reply]:
    """Answer ``table[(model response, order)]``; the model response starts with "m", order AB = it is A."""

    def respond(body: dict[str, Any], n: int) -> Reply:
        a, b = shown_pair(body)
        return Reply(table[(a, "AB")] if a.startswith("m") else table[(b, "BA")])

    return respond


# -- parsing and combination rules ---------------------------------------------------------------
@pytest.mark.parametrize("text,want", [
    ("A", "A"), (" b \n", "B"), ("Tie", "tie"), ("TIE.", "tie"), ('"A"', "A"), ("**B**", "B"),
    ("The first is kinder.\nVerdict: A", "A"), ("Answer: tie", "tie"),
    ("", None), ("A or B", None), ("Response A", None), ("A is better", None), ("draw", None),
    ("neither", None), (None, None), ("AB", None),
])
def test_parse_verdict_is_strict(text: str | None, want: str | None) -> None:
    assert parse_verdict(text) == want


def test_combine_rule() -> None:
    # AB: the first completion is shown as A; BA: as B
    both = {("A", "B"): "win", ("B", "A"): "loss", ("A", "A"): "tie", ("B", "B"): "tie",
            ("A", "tie"): "tie", ("tie", "B"): "tie", ("tie", "tie"): "tie", ("B", "tie"): "tie",
            ("tie", "A"): "tie"}
    for (ab, ba), want in both.items():
        assert combine({"AB": ab, "BA": ba}) == want, (ab, ba)
    assert combine({"AB": "A"}) == "win" and combine({"BA": "A"}) == "loss"
    assert combine({"BA": "B"}) == "win" and combine({"AB": "tie"}) == "tie"


# -- the judge against the fake server -----------------------------------------------------------
def test_both_orders_combined_and_prompt(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    table = {("m_win", "AB"): "A", ("m_win", "BA"): "B", ("m_loss", "AB"): "B", ("m_loss", "BA"): "A",
             ("m_pos", "AB"): "A", ("m_pos", "BA"): "A",  # position bias: always A -> tie
             ("m_half", "AB"): "A", ("m_half", "BA"): "tie"}
    srv = serve(scripted(table))
    judge = make_judge(srv, tmp_path)
    models = ["m_win", "m_loss", "m_pos", "m_half"]
    out = judge.judge([f"\n\nHuman: q{i}\n\nAssistant:" for i in range(4)], [(m, "ref") for m in models])
    assert [j.outcome for j in out] == ["win", "loss", "tie", "tie"]
    assert [j.score for j in out] == [1.0, 0.0, 0.5, 0.5]
    assert out[0].verdicts == {"AB": "A", "BA": "B"} and out[0].error is None
    assert len(srv.requests) == 8 and judge.stats.requests == 8 and judge.stats.retries == 0
    body = srv.requests[0]
    assert body["model"] == "gpt-4" and body["temperature"] == 0
    assert "helpful and harmless" in body["messages"][1]["content"]
    assert set(srv.auth) == {f"Bearer {KEY}"}


def test_one_direction_asks_once_per_item(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    srv = serve(lambda body, n: Reply("A" if shown_pair(body)[0].startswith("m") else "B"))  # model always wins
    judge = make_judge(srv, tmp_path, one_direction=True)
    out = judge.judge([f"p{i}" for i in range(20)], [(f"m{i}", "ref") for i in range(20)])
    assert len(srv.requests) == 20 and all(j.outcome == "win" for j in out)
    orders = [next(iter(j.verdicts)) for j in out]
    assert 0 < orders.count("AB") < 20  # stable-hash order: both positions are used


@pytest.mark.parametrize("settings,want", [
    ({}, False), ({"judge_protocol": "both"}, False), ({"judge_protocol": "paper"}, True),
    ({"judge_protocol": "uni"}, "judge_protocol='uni': must be both | paper"),
    ({"judge_workers": 0}, "judge_workers=0: must be integer >= 1"),
])
def test_protocol_is_a_task_setting(settings: dict[str, Any], want: bool | str) -> None:
    if isinstance(want, str):
        with pytest.raises(OptionError, match=want):
            JudgeSettings.of(TASK_SETTINGS.parse(settings, where="task setting"))
    else:
        assert JudgeSettings.of(TASK_SETTINGS.parse(settings, where="task setting")).one_direction is want
    with pytest.raises(OptionError, match="judge_protocol='uni'"):
        JudgeSettings(protocol="uni")


@pytest.mark.parametrize("protocol,per_item,name", [("paper", 1, "gpt-4@v1/one-direction"), ("both", 2, "gpt-4@v1")])
def test_protocol_request_counts(serve: Callable[..., FakeOpenAIServer], monkeypatch: pytest.MonkeyPatch,
                                 protocol: str, per_item: int, name: str) -> None:
    from icdpo_eval.tasks import winrate

    srv = serve(lambda body, n: Reply("A" if shown_pair(body)[0].startswith("m") else "B"))  # model always wins
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    judge = judge_for(JudgeSettings(protocol=protocol))
    assert judge.protocol == protocol and judge.name == name
    out = judge.judge([f"p{i}" for i in range(6)], [(f"m{i}", "ref") for i in range(6)])
    assert len(srv.requests) == 6 * per_item and all(j.outcome == "win" for j in out)
    assert all(len(j.verdicts) == per_item for j in out)
    # the winrate metric records the protocol in every sample's judge name
    items = [winrate.process_results(d, ["m"])["winrate"] for d in with_settings(_docs(3), judge_protocol=protocol)]
    assert winrate.winrate_aggregate(items) == 1.0
    assert len(srv.requests) == 9 * per_item and {it["judge"] for it in items} == {name}


def test_retries_on_429_500_and_timeout(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    script = {0: Reply(status=429, headers={"Retry-After": "0"}), 1: Reply(status=500), 2: Reply(status=503),
              3: Reply("A", delay=1.0)}
    srv = serve(lambda body, n: script.get(n, Reply("B")))
    judge = make_judge(srv, tmp_path, one_direction=True, max_workers=1, timeout=0.3)
    [j] = judge.judge(["p"], [("m", "ref")])
    # one direction: item ("p", "m", "ref") is shown in order AB (stable hash), so the model response is A
    # and the "B" answered on the 5th request is a loss
    assert PairwiseJudge._orders("p", "m", "ref", True) == ("AB",)
    assert j.outcome == "loss" and j.verdicts == {"AB": "B"} and j.score == 0.0
    assert len(srv.requests) == 5 and judge.stats.requests == 5 and judge.stats.retries == 4


def test_persistent_failure_raises_loudly(serve: Callable[..., FakeOpenAIServer], tmp_path: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    srv = serve(lambda body, n: Reply(status=500))
    judge = make_judge(srv, tmp_path, one_direction=True, max_tries=3)
    with caplog.at_level(logging.DEBUG), pytest.raises(JudgeError, match=r"item doc-7 .*3 tries.*HTTP 500"):
        judge.judge(["p"], [("m", "ref")], ids=["doc-7"])
    assert len(srv.requests) == 3 and judge.stats.retries == 2
    assert KEY not in caplog.text


def test_non_retryable_status_raises_at_once(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    srv = serve(lambda body, n: Reply(status=401))
    with pytest.raises(JudgeError, match="HTTP 401"):
        make_judge(srv, tmp_path, one_direction=True).judge(["p"], [("m", "ref")])
    assert len(srv.requests) == 1


def test_unparsable_is_reasked_once_then_an_error(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    # item "m_ok": garbage, then "A" after the re-ask; item "m_bad": garbage twice
    def respond(body: dict[str, Any], n: int) -> Reply:
        a, _ = shown_pair(body)
        if a == "m_ok":
            return Reply("A" if body["messages"][-1]["content"] == REASK else "I prefer the first one")
        return Reply("hmm, hard to say")

    srv = serve(respond)
    judge = make_judge(srv, tmp_path, one_direction=True, max_workers=1)
    judge._orders = lambda *a: ("AB",)  # type: ignore[method-assign]  # the model response shown as A
    ok, bad = judge.judge(["p1", "p2"], [("m_ok", "ref"), ("m_bad", "ref")], ids=["d1", "d2"])
    assert ok.outcome == "win" and ok.verdicts == {"AB": "A"}
    assert bad.outcome == "error" and bad.score is None and bad.verdicts == {"AB": "unparsable"}
    assert "d2" in (bad.error or "") and "hard to say" in (bad.error or "")
    assert len(srv.requests) == 4 and judge.stats.reasks == 2
    reask = srv.requests[1]["messages"]
    assert [m["role"] for m in reask] == ["system", "user", "assistant", "user"]
    # only the parsed verdict is cached: a rerun re-asks the failed item, not the good one
    judge.judge(["p1", "p2"], [("m_ok", "ref"), ("m_bad", "ref")])
    assert len(srv.requests) == 6


def test_cache_second_run_makes_no_request(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    srv = serve(lambda body, n: Reply("A"))
    prompts, pairs = ["p1", "p2", "p3"], [("m1", "r1"), ("m2", "r2"), ("m3", "r3")]
    first = make_judge(srv, tmp_path).judge(prompts, pairs)
    assert len(srv.requests) == 6
    again = make_judge(srv, tmp_path)  # a new process would see the same file
    assert [j.outcome for j in again.judge(prompts, pairs)] == [j.outcome for j in first]
    assert len(srv.requests) == 6 and again.stats.cache_hits == 6 and again.stats.requests == 0
    assert len(VerdictCache(tmp_path / "c.sqlite")) == 6
    # the key holds the judge model (and the order): another model pays again
    make_judge(srv, tmp_path, model="other-judge").judge(prompts[:1], pairs[:1])
    assert len(srv.requests) == 8


def test_interrupted_run_resumes(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    srv = serve(lambda body, n: Reply(status=500) if "m_fail" in shown_pair(body) else Reply("tie"))
    prompts, pairs = ["p1", "p2", "p3"], [("m1", "r"), ("m_fail", "r"), ("m3", "r")]
    with pytest.raises(JudgeError, match="item 1"):
        make_judge(srv, tmp_path, max_workers=1, max_tries=2).judge(prompts, pairs)
    healthy = serve(lambda body, n: Reply("tie"))
    judge = make_judge(healthy, tmp_path)
    assert [j.outcome for j in judge.judge(prompts, pairs)] == ["tie"] * 3
    # whatever arrived before the failure was written at once: only the rest is asked again
    # (one worker takes requests in order: item 0's two verdicts were in before item 1 failed; the failed
    # item's are never cached)
    assert 2 <= judge.stats.cache_hits <= 4 and len(healthy.requests) == 6 - judge.stats.cache_hits


def test_no_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from icdpo_eval.tasks import utils

    for value in (None, "  "):
        if value is None:
            monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        else:
            monkeypatch.setenv("OPENAI_API_KEY", value)
        with pytest.raises(MissingAPIKeyError, match="set OPENAI_API_KEY.*OPENAI_BASE_URL"):
            PairwiseJudge()
        with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
            utils.load(data="hh_harmless", sample="winrate")  # before any data or model is loaded


# -- the winrate metric functions ------------------------------------------------------------------
WINRATE_METRICS = ["winrate", "winrate_n", "winrate_lc", "winrate_lc_low", "winrate_lc_high", "length",
                   "winrate_failed"]

def _docs(n: int) -> list[dict[str, str]]:
    return [{"id": f"doc{i}", "prompt": f"\n\nHuman: question {i}\n\nAssistant:", "chosen": f" ref{i}",
             "rejected": "no"} for i in range(n)]


def test_winrate_matches_hand_computation(serve: Callable[..., FakeOpenAIServer],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from icdpo_eval.tasks import winrate

    # per model response: (verdict when the model is A, verdict when the model is B)
    plan = {"m0": ("A", "B"), "m1": ("A", "B"), "m2": ("A", "A"), "m3": ("B", "A"), "m4": ("?", "?"),
            "m5": ("tie", "tie")}

    def respond(body: dict[str, Any], n: int) -> Reply:
        a, b = shown_pair(body)
        return Reply(plan[a][0] if a.startswith("m") else plan[b][1])

    srv = serve(respond)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    docs = _docs(6)
    per_doc = [winrate.process_results(d, [f"  m{i} "]) for i, d in enumerate(docs)]
    assert set(per_doc[0]) == {"winrate", "winrate_n", "winrate_failed", "winrate_lc", "winrate_lc_low",
                               "winrate_lc_high", "length"}
    items = [r["winrate"] for r in per_doc]
    assert items[0]["response"] == "m0" and items[0]["reference"] == "ref0" and items[0]["outcome"] is None
    # win, win, tie, loss, error, tie -> (1 + 1 + 0.5 + 0 + 0.5) / 5 judged, 1 failed
    assert winrate.winrate_aggregate(items) == pytest.approx(3.0 / 5)
    sent = len(srv.requests)
    assert sent == 12 + 2  # two orders x 6 items + one re-ask per order of the garbage item
    assert winrate.winrate_n_aggregate([r["winrate_n"] for r in per_doc]) == 5
    assert winrate.winrate_failed_aggregate([r["winrate_failed"] for r in per_doc]) == 1
    assert len(srv.requests) == sent  # the other two aggregations reuse the filled items
    assert [it["outcome"] for it in items] == ["win", "win", "tie", "loss", "error", "tie"]
    assert items[0]["judge"] == "gpt-4@v1" and items[0]["verdicts"] == {"AB": "A", "BA": "B"}
    assert "doc4" in items[4]["error"]


def test_winrate_lc_from_the_same_verdicts(serve: Callable[..., FakeOpenAIServer],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge that always prefers the longer response: the raw win rate follows the model's length advantage,
    the length-controlled one does not; LC needs no request of its own."""
    import random

    from icdpo_eval.tasks import winrate

    def respond(body: dict[str, Any], n: int) -> Reply:
        a, b = shown_pair(body)
        la, lb = len(a.split()), len(b.split())  # words: one token each here
        return Reply("A" if la > lb else "B" if lb > la else "tie")

    srv = serve(respond)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    rng = random.Random(0)
    docs = [{"id": f"d{i}", "prompt": f"\n\nHuman: q{i}\n\nAssistant:",
             "chosen": " ".join(["ref"] * rng.randint(3, 30)), "rejected": "no"} for i in range(40)]
    answers = [" ".join(["word"] * (len(d["chosen"].split()) + rng.randint(-4, 12))) for d in docs]
    per_doc = [winrate.process_results(d, [a]) for d, a in zip(docs, answers)]
    assert per_doc[0]["length"] == per_doc[0]["winrate"]["length"] > 0
    items = [r["winrate"] for r in per_doc]
    raw = winrate.winrate_aggregate(items)
    sent = len(srv.requests)
    lc = winrate.winrate_lc_aggregate([r["winrate_lc"] for r in per_doc])
    low = winrate.winrate_lc_low_aggregate([r["winrate_lc_low"] for r in per_doc])
    high = winrate.winrate_lc_high_aggregate([r["winrate_lc_high"] for r in per_doc])
    assert len(srv.requests) == sent  # computed from the cached verdicts
    assert raw > 0.7 and abs(lc - 0.5) < 0.15 and low <= lc <= high


def test_winrate_sample_and_one_direction(serve: Callable[..., FakeOpenAIServer],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from icdpo_eval.tasks import winrate

    srv = serve(lambda body, n: Reply("A" if shown_pair(body)[0].startswith("m") else "B"))
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    docs = with_settings(_docs(10), winrate_n=4, judge_protocol="paper")
    items = [winrate.process_results(d, ["m"])["winrate"] for d in docs]
    assert winrate.winrate_aggregate(items) == 1.0 and winrate.winrate_n_aggregate(items) == 4
    assert len(srv.requests) == 4
    judged = {it["id"] for it in items if it["outcome"] == "win"}
    assert judged == winrate.in_sample([d["id"] for d in docs], 4, 1234)
    assert judged == winrate.in_sample([d["id"] for d in reversed(docs)], 4, 1234)
    assert sum(it["outcome"] == "not_sampled" for it in items) == 6
    assert items[0]["judge"] == "gpt-4@v1/one-direction"


def test_winrate_task_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval.tasks import TaskManager

    from icdpo_eval._lm_eval_hook import tasks_dir
    from icdpo_eval.data.datasets import load_pairs
    from icdpo_eval.tasks import winrate
    from icdpo_eval.tasks.settings import settings_of

    tm = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"winrate_n": 7})
    for name in ("hh_harmless_winrate", "hh_helpful_winrate", "hh_harmless_mini_winrate"):
        assert name in tm.all_tasks
    loaded = tm.load(["hh_harmless_mini_winrate"])["tasks"]
    [task] = list(loaded.values()) if isinstance(loaded, dict) else list(loaded)
    assert [m["metric"] for m in task.config.metric_list] == WINRATE_METRICS
    assert task.config.generation_kwargs["top_p"] == 0.8  # the template's settings are kept
    docs = list(task.test_docs())
    assert len(docs) == 7
    all_ids = [r["id"] for r in load_pairs("hh-rlhf-mini", None, "eval")]
    assert {d["id"] for d in docs} == winrate.in_sample(all_ids, 7, 1234)
    assert all(settings_of(d).winrate_n == 7 for d in docs)  # each row names the run's task settings


def test_retries_counted_across_workers(serve: Callable[..., FakeOpenAIServer], tmp_path: Any) -> None:
    # each item's first request gets a 503, its second the verdict: 8 workers, 8 items, one order each
    first: set[tuple[str, str]] = set()

    def respond(body: dict[str, Any], n: int) -> Reply:
        a, b = shown_pair(body)
        if (a, b) not in first:
            first.add((a, b))
            return Reply(status=503)
        return Reply("A" if a.startswith("m") else "B")

    srv = serve(respond)
    judge = make_judge(srv, tmp_path, one_direction=True, max_workers=8)
    out = judge.judge([f"p{i}" for i in range(8)], [(f"m{i}", "ref") for i in range(8)])
    assert [j.outcome for j in out] == ["win"] * 8
    assert len(srv.requests) == 16 and judge.stats.requests == 16 and judge.stats.retries == 8
