"""icdpo-eval borrow: teacher-regenerated demos, resumable, never an empty chosen; --report (Table 1)."""

from __future__ import annotations

import json
import math

from _rm_checks import proxy_rm_bound
from fake_openai_server import FakeOpenAIServer, Reply

from icdpo_eval import cli
from icdpo_eval.data.datasets import demo_pool
from icdpo_eval.method.demos import DemoStore, apply_borrowed
from icdpo_eval.prepare import borrow


def run(argv: list[str]) -> int:
    """``icdpo-eval borrow ...`` as a user runs it (the CLI turns user errors into one line and exit 2)."""
    return cli.main(["borrow", *argv])


def rows_of(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_borrow_with_api_teacher_resumes_and_skips_empty(tmp_path, monkeypatch, capsys):
    pool = demo_pool(None, "hh_harmless_mini")[:5]
    bad = pool[2]["prompt"]
    seen: list[str] = []

    def respond(body, n):
        last = body["messages"][-1]["content"]
        seen.append(last)
        empty = last in bad and seen.count(last) == 1  # empty the first time only
        return Reply("" if empty else f"Teacher says: be kind ({len(last)}).\n\nHuman: cut here")

    out = tmp_path / "demos.jsonl"
    with FakeOpenAIServer(respond) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "x")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        argv = ["--teacher", "openai:gpt-3.5-turbo", "--out", str(out), "--limit", "5", "--batch-size", "2"]
        assert run(argv) == 0
        assert "1 empty teacher responses skipped" in capsys.readouterr().out
        rows = rows_of(out)
        assert [r["id"] for r in rows] == [r["id"] for r in pool if r["prompt"] != bad]
        for r, src in zip(rows, [r for r in pool if r["prompt"] != bad]):
            assert r["chosen"].startswith("Teacher says") and "Human:" not in r["chosen"]
            assert (r["prompt"], r["rejected"], r["source_chosen"]) == (src["prompt"], src["rejected"], src["chosen"])
            assert r["teacher"] == "openai:gpt-3.5-turbo"
        assert srv.requests[0]["temperature"] == 0 and srv.requests[0]["messages"][0]["role"] == "user"
        # resume: only the row whose response was empty is asked again
        with open(out, "a") as fh:
            fh.write('{"id": "trunc')  # an interrupted write
        n_before = len(srv.requests)
        assert run(argv) == 0
        assert len(srv.requests) == n_before + 1
        assert run(argv) == 0
        assert len(srv.requests) == n_before + 1  # nothing left to regenerate
    rows = rows_of(out)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in pool) and all(r["chosen"].strip() for r in rows)
    # what --model icdpo --model_args demo_source=demos.jsonl reads
    borrowed = apply_borrowed(pool, str(out))
    assert all(b["chosen"].startswith("Teacher says") for b in borrowed) and len(borrowed) == 5
    store = DemoStore(demo_source=str(out)).pool("hh_harmless_mini")
    assert {r["id"] for r in store} == {r["id"] for r in pool}


def test_api_teacher_without_key_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert run(["--teacher", "openai:gpt-4", "--out", str(tmp_path / "d.jsonl"), "--limit", "1"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_borrow_with_embedded_teacher_and_report(tmp_path, monkeypatch, capsys):
    # the tiny twin of the teacher answers greedily with blank lines only (random weights): it samples here
    out = tmp_path / "demos.jsonl"
    assert run(["--out", str(out), "--limit", "2", "--max-new-tokens", "8", "--top-p", "1.0", "--device", "cpu",
                "--report", "--rm", "proxy"]) == 0
    rows = rows_of(out)
    pool = demo_pool(None, "hh_harmless_mini")[:2]
    assert [r["id"] for r in rows] == [r["id"] for r in pool]
    assert all(r["chosen"].strip() and r["teacher"] == "embedded:teacher" for r in rows)
    assert all(r["chosen"] != p["chosen"] and r["source_chosen"] == p["chosen"] for r, p in zip(rows, pool))
    text = capsys.readouterr().out
    assert "teacher chosen (embedded:teacher)" in text and "dataset chosen (raw)" in text
    table = borrow.report(out, "proxy")
    assert [n for _, n, _ in table] == [2, 2, 2]
    # mean proxy reward x100 of three different sets of texts: finite, within the proxy's range, all different
    _, bound = proxy_rm_bound()
    values = [v for _, _, v in table]
    assert all(math.isfinite(v) and abs(v) <= 100 * bound for v in values) and len(set(values)) == 3, values
    assert all(f"{v:7.2f}" in text for v in values)  # the printed table shows the same numbers
