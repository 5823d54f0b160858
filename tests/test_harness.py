"""lm-eval through its public doors (icdpo_eval/harness.py): ``icdpo-eval run``'s flags are lm-eval's configuration
fields, our tasks need none of lm-eval's own index, and the ``icdpo-eval`` program patches nothing of lm-eval."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import pytest

from icdpo_eval import harness
from icdpo_eval.errors import OptionError


def test_run_flags_are_lm_evals_configuration_fields():
    from lm_eval.config.evaluate_config import EvaluatorConfig

    flags = {a.dest for a in harness.run_parser()._actions if a.dest != "help"}
    assert flags == {f.name for f in fields(EvaluatorConfig)} - set(harness._NOT_HERE)


def test_run_flags_parse_to_a_validated_configuration():
    ns = harness.run_parser().parse_args(
        ["--model", "icdpo", "--model_args", "n=3,scorer=s_hat", '{"retriever": "bm25"}', "--tasks", "a,b",
         "--limit", "2", "--seed", "1,2,3,4", "--cache_requests", "refresh", "--gen_kwargs", "max_gen_toks=5"])
    cfg = harness._config(ns)
    assert cfg.model_args == {"n": 3, "scorer": "s_hat", "retriever": "bm25"}
    assert cfg.limit == 2.0 and cfg.seed == [1, 2, 3, 4] and cfg.gen_kwargs == {"max_gen_toks": 5}
    assert ns.cache_requests == {"cache_requests": True, "rewrite_requests_cache": True}
    assert cfg.metadata["n"] == 3  # lm-eval's merge: model_args are task metadata too


def test_bad_run_flags_name_themselves():
    with pytest.raises(OptionError, match="output_path"):  # lm-eval's own validation, as one line
        harness._config(harness.run_parser().parse_args(["--tasks", "x", "--log_samples"]))
    with pytest.raises(OptionError, match="not a JSON object"):
        harness._dict_arg(['{"a": 1'])


def test_our_tasks_need_none_of_lm_evals_index():
    tm = harness.task_manager(["hh_harmless_mini", "hh_harmless_mini_pairs"])
    assert tm.match_tasks(["hh_harmless_mini"]) and not tm.match_tasks(["arc_easy"])  # lm-eval's not indexed
    assert harness.task_manager(["hh_harmless_mini", "arc_easy"]).match_tasks(["arc_easy"])  # indexed when asked


def test_unknown_task_is_one_line():
    with pytest.raises(OptionError, match="unknown task.*hh_harmlss"):
        harness.evaluate("icdpo", "hh_harmlss", "n=2")


PROBE = """
import sys
from icdpo_eval.cli import console
sys.argv = ["icdpo-eval", "run", "--model", "icdpo", "--model_args", "scorrer=s", "--tasks", "hh_harmless_mini",
            "--limit", "1"]
rc = console()
import lm_eval.evaluator as e, lm_eval.tasks.manager as m, lm_eval.tasks._index as i
print("patched:", [bool(getattr(e.simple_evaluate, "_icdpo_eval_wrapped", False)),
                   bool(getattr(m.TaskManager, "_icdpo_eval_patched", False)),
                   bool(getattr(i.TaskIndex.build, "_icdpo_eval_cached", False))], "rc:", rc)
"""


def test_icdpo_eval_program_patches_nothing_and_ends_a_user_error_in_one_line(tmp_path):
    """The ``icdpo-eval`` program takes the stock-CLI hook out before lm-eval is imported (seen red: with the
    program's ``uninstall`` removed, all three patches were in place) and its run fails a bad model_arg with one
    line after lm-eval's task manager and evaluator are imported, before any weights load."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert "patched: [False, False, False] rc: 2" in run.stdout, (run.stdout, run.stderr[-3000:])
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("icdpo-eval run: error:")]
    assert len(lines) == 1 and "scorrer" in lines[0] and "Traceback" not in run.stderr, run.stderr[-3000:]
