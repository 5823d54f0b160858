"""Reliability: a judge outage loses no generation; bad input fails fast with one clear line.

Every command runs in this process on the tiny twins (tests/_inproc.py): the exit status and the output are
what a user's process would give (user errors end with one line and exit 2, no traceback)."""

from __future__ import annotations

import re
import time

import pytest
from _inproc import Run, icdpo_eval, lm_eval
from fake_openai_server import Reply, shown_pair

from icdpo_eval.data.datasets import load_pairs
from icdpo_eval.errors import UserError

WINRATE = "hh_harmless_mini_winrate"


def test_judge_outage_keeps_generations_and_resumes_only_missing_verdicts(tmp_path, serve):
    # the judge prefers the model's response over the dataset's chosen one, in whichever order they are shown:
    # every document is a win in both orders, so the resumed win rate is exactly 1.0 (an answer that ignores
    # the order, e.g. always "A", is a tie: 0.5)
    references = {r["chosen"].strip() for r in load_pairs("hh-rlhf-mini", None, "eval")}
    state = {"down": True, "ok": 0, "unsure": 0}

    def responder(body, n):
        if state["down"] and n >= 3:  # three verdicts arrive, then the judge fails for good
            return Reply(status=500)
        state["ok"] += 1
        a, b = shown_pair(body)
        if (a.strip() in references) == (b.strip() in references):
            state["unsure"] += 1  # cannot tell the model's response from the reference: the check below fails
        return Reply(content="B" if a.strip() in references else "A")

    srv = serve(responder)
    env = {"OPENAI_API_KEY": "x", "OPENAI_BASE_URL": srv.base_url,
           "ICDPO_JUDGE_CACHE": str(tmp_path / "verdicts.sqlite"), "ICDPO_JOURNAL_DIR": str(tmp_path / "journal")}

    def run(out: str) -> Run:
        return lm_eval("--model", "icdpo", "--model_args", "max_new_tokens=8", "--tasks", WINRATE, "--limit", "4",
                       "--metadata", '{"rm": "proxy", "judge_max_tries": 2}', "--output_path", str(tmp_path / out),
                       "--log_samples", env=env)

    down = run("down")
    assert down.rc == 2, down.out[-3000:]  # the judge's failure is a user error: one line, exit 2
    m = re.search(r"(\d+) of 8 verdicts are missing \((\d+) cached\); rerun the same command", down.out)
    assert m, down.out[-3000:]
    missing = int(m.group(1))
    assert int(m.group(2)) == 3 and missing == 5
    assert down.results is None  # no results were written for the failed run
    journaled = sum(len(p.read_text().splitlines()) for p in (tmp_path / "journal").glob("*/rank*.jsonl"))
    assert journaled == 4  # every generation was kept before the judge ran
    state.update(down=False, ok=0)
    up = run("up").ok()
    assert "4 of 4 documents resumed, 0 to generate" in up.out
    assert state["ok"] == missing  # the rerun sent only the missing judge requests
    assert state["unsure"] == 0
    res = up.results["results"][WINRATE]
    assert res["winrate_n,none"] == 4 and res["winrate_failed,none"] == 0, res
    assert res["winrate,none"] == 1.0, res  # the 3 cached verdicts and the 5 new ones: 4 wins
    items = [s["winrate"] for s in up.samples[WINRATE]]
    assert [it["outcome"] for it in items] == ["win"] * 4 and all(it["score"] == 1.0 for it in items)


# -- fail fast: (command, what the one line must say); each fails before any model is loaded ---------------
def one_line_error(run: Run, command: str) -> str:
    assert run.rc == 2, run.out[-2000:]
    assert "Traceback" not in run.out, run.out[-2000:]
    lines = run.error_lines(f"icdpo-eval {command}: error: ")
    assert len(lines) == 1, run.out[-2000:]
    return lines[0]


SPEC_ERRORS = {  # file -> (spec text, what the one line says; {path} is the spec's path)
    "a.yaml": ("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: icdpo\n  - {name: B}\n",
               "{path}:4:.*not valid YAML"),
    "b.yaml": ("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: hf}\n  - {name: B, model: nope}\n",
               "row 'B': unknown model 'nope'"),
    "c.yaml": ("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: icdpo, model_args: {scorr: s}}\n",
               re.escape("row 'A': unknown --model icdpo model_arg(s) scorr; --model icdpo takes: scorer")),
    "c2.yaml": ("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: icdpo, model_args: {k: -1}}\n",
                re.escape("row 'A': --model icdpo model_arg k=-1: must be integer >= 0")),
    "c3.yaml": ("tasks: [hh_harmless_mini]\nenv: {ICDPO_RM: proxy}\nrows:\n  - {name: A, model: icdpo}\n",
                "`env:` is no longer read.*metadata: {rm: proxy}"),
    "c4.yaml": ("tasks: [hh_harmless_mini]\nmetadata: {rm: /nonexistent/rm}\nrows:\n  - {name: A, model: icdpo}\n",
                "{path}: metadata rm='/nonexistent/rm': no such local folder"),
    "d.yaml": ("tasks: [hh_nope]\nrows:\n  - {name: A, model: icdpo}\n", re.escape("unknown task(s) hh_nope")),
}


@pytest.mark.parametrize("name", sorted(SPEC_ERRORS))
def test_leaderboard_spec_errors_are_one_line_and_early(tmp_path, monkeypatch, name):
    from icdpo_eval.engine import Engine

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the spec was found wrong")

    monkeypatch.setattr(Engine, "load", no_model)
    text, want = SPEC_ERRORS[name]
    spec = tmp_path / name
    spec.write_text(text)
    t0 = time.time()
    line = one_line_error(icdpo_eval("leaderboard", str(spec), "--out", str(tmp_path / "o")), "leaderboard")
    assert re.search(want.replace("{path}", re.escape(str(spec))), line), line
    assert time.time() - t0 < 30
    assert not (tmp_path / "o" / "cells").exists()  # no cell ran before the spec was found wrong


def test_debug_shows_the_traceback(tmp_path):
    proc = icdpo_eval("compare", str(tmp_path / "nope.csv"), str(tmp_path / "nope2.csv"), "--debug")
    assert proc.rc != 0
    argv = ("train", "sft", "--task", "nope", "--out", str(tmp_path / "x"))
    line = one_line_error(icdpo_eval(*argv), "train")
    assert "--task 'nope' is not one of" in line
    # --debug: the same user error is not caught; it propagates, so the process shows its traceback
    with pytest.raises(UserError, match="--task 'nope' is not one of"):
        icdpo_eval(*argv, "--debug")
