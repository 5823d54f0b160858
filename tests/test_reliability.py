"""Reliability: a judge outage loses no generation; bad input fails fast with one clear line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_openai_server import Reply

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_judge_outage_keeps_generations_and_resumes_only_missing_verdicts(tmp_path, serve):
    state = {"down": True, "ok": 0}

    def responder(body, n):
        if state["down"] and n >= 3:  # three verdicts arrive, then the judge fails for good
            return Reply(status=500)
        state["ok"] += 1
        return Reply(content="A")

    srv = serve(responder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "x", "OPENAI_BASE_URL": srv.base_url,
           "ICDPO_JUDGE_CACHE": str(tmp_path / "verdicts.sqlite"), "ICDPO_JOURNAL_DIR": str(tmp_path / "journal")}
    cmd = [str(BIN / "lm_eval"), "--model", "icdpo", "--model_args", "max_new_tokens=8", "--tasks",
           "hh_harmless_mini_winrate", "--limit", "4", "--metadata", '{"rm": "proxy", "judge_max_tries": 2}']
    down = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert down.returncode != 0
    m = re.search(r"(\d+) of 8 verdicts are missing \((\d+) cached\); rerun the same command", down.stderr)
    assert m, down.stderr[-3000:]
    missing = int(m.group(1))
    assert int(m.group(2)) == 3 and missing == 5
    journaled = sum(len(p.read_text().splitlines()) for p in (tmp_path / "journal").glob("*/rank*.jsonl"))
    assert journaled == 4  # every generation was kept before the judge ran
    state.update(down=False, ok=0)
    up = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert up.returncode == 0, up.stderr[-3000:]
    assert "4 of 4 documents resumed, 0 to generate" in up.stderr
    assert state["ok"] == missing  # the rerun sent only the missing judge requests
    assert re.search(r"winrate\s*\|[^|]*\|\s*1\.0", up.stdout + up.stderr) or "winrate" in up.stdout


# -- fail fast: (command, what the one line must say); each runs with no model loaded ---------------------
def icdpo_eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "icdpo-eval"), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess, command: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"icdpo-eval {command}: error: ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def test_leaderboard_spec_errors_are_one_line_and_early(tmp_path):
    bad_yaml = tmp_path / "a.yaml"
    bad_yaml.write_text("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: icdpo\n  - {name: B}\n")
    line = one_line_error(icdpo_eval("leaderboard", str(bad_yaml), "--out", str(tmp_path / "o")), "leaderboard")
    assert f"{bad_yaml}:4:" in line and "not valid YAML" in line
    unknown = tmp_path / "b.yaml"
    unknown.write_text("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: hf}\n  - {name: B, model: nope}\n")
    t0 = time.time()
    line = one_line_error(icdpo_eval("leaderboard", str(unknown), "--out", str(tmp_path / "o")), "leaderboard")
    assert "row 'B': unknown model 'nope'" in line and time.time() - t0 < 60
    assert not (tmp_path / "o" / "cells").exists()  # no cell ran before the spec was found wrong
    arg = tmp_path / "c.yaml"
    arg.write_text("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: icdpo, model_args: {scorr: s}}\n")
    line = one_line_error(icdpo_eval("leaderboard", str(arg), "--out", str(tmp_path / "o")), "leaderboard")
    assert "row 'A': unknown --model icdpo model_arg(s) scorr; --model icdpo takes: scorer" in line
    bad_value = tmp_path / "c2.yaml"
    bad_value.write_text("tasks: [hh_harmless_mini]\nrows:\n  - {name: A, model: icdpo, model_args: {k: -1}}\n")
    line = one_line_error(icdpo_eval("leaderboard", str(bad_value), "--out", str(tmp_path / "o")), "leaderboard")
    assert "row 'A': --model icdpo model_arg k=-1: must be integer >= 0" in line
    moved = tmp_path / "c3.yaml"
    moved.write_text("tasks: [hh_harmless_mini]\nenv: {ICDPO_RM: proxy}\nrows:\n  - {name: A, model: icdpo}\n")
    line = one_line_error(icdpo_eval("leaderboard", str(moved), "--out", str(tmp_path / "o")), "leaderboard")
    assert "`env:` is no longer read" in line and "metadata: {rm: proxy}" in line
    rm = tmp_path / "c4.yaml"
    rm.write_text("tasks: [hh_harmless_mini]\nmetadata: {rm: /nonexistent/rm}\nrows:\n  - {name: A, model: icdpo}\n")
    line = one_line_error(icdpo_eval("leaderboard", str(rm), "--out", str(tmp_path / "o")), "leaderboard")
    assert f"{rm}: metadata rm='/nonexistent/rm': no such local folder" in line
    task = tmp_path / "d.yaml"
    task.write_text("tasks: [hh_nope]\nrows:\n  - {name: A, model: icdpo}\n")
    line = one_line_error(icdpo_eval("leaderboard", str(task), "--out", str(tmp_path / "o")), "leaderboard")
    assert "unknown task(s) hh_nope" in line


def test_debug_shows_the_traceback(tmp_path):
    proc = icdpo_eval("compare", str(tmp_path / "nope.csv"), str(tmp_path / "nope2.csv"), "--debug")
    assert proc.returncode != 0
    one = icdpo_eval("train", "sft", "--task", "nope", "--out", str(tmp_path / "x"))
    line = one_line_error(one, "train")
    assert "--task 'nope' is not one of" in line
