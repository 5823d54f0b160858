"""The stock CLIs run in THIS process: ``lm_eval`` through lm-eval's own ``cli_evaluate`` with its argv, and
``icdpo-eval`` through :func:`icdpo_eval.cli.main`. Models, tokenizers and the task index load once per test
session instead of once per command (a process start costs ~25 s here; an in-process run on the tiny twins ~3 s).

:func:`pipeline` shares ONE run of each named pipeline (:data:`PIPELINES`) among the tests that assert different
things about it: the first test that asks runs it, the others read its results, samples and output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """One command's exit status, its stdout + stderr, and (with ``--output_path``) lm-eval's results JSON and
    logged samples per task."""

    argv: list[str]
    rc: int
    out: str
    results: dict[str, Any] | None = None
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    output_path: Path | None = None

    def ok(self) -> Run:
        assert self.rc == 0, f"{shlex.join(self.argv)} exited {self.rc}\n{self.out[-4000:]}"
        return self

    def error_lines(self, prefix: str) -> list[str]:
        return [ln for ln in self.out.splitlines() if ln.startswith(prefix)]


@contextlib.contextmanager
def environment(env: dict[str, str | None] | None):
    """Set (or, with None, unset) variables for the duration of the block."""
    saved = {k: os.environ.get(k) for k in (env or {})}
    try:
        for k, v in (env or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _read_outputs(run: Run) -> Run:
    if "--output_path" not in run.argv:
        return run
    out = Path(run.argv[run.argv.index("--output_path") + 1])
    run.output_path = out
    results = sorted(out.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if results:
        run.results = json.loads(results[-1].read_text())
        folder = results[-1].parent
        for p in sorted(folder.glob("samples_*.jsonl")):
            task = p.name.removeprefix("samples_").rsplit("_", 1)[0]
            run.samples[task] = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    return run


def lm_eval(*argv: str, env: dict[str, str | None] | None = None) -> Run:
    """``lm_eval ARGV`` in this process (lm-eval's ``cli_evaluate``, with the registration hook as installed)."""
    from lm_eval.__main__ import cli_evaluate

    buf = io.StringIO()
    saved = sys.argv
    rc = 0
    with environment({"HF_HUB_OFFLINE": "1", **(env or {})}):
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                sys.argv = ["lm_eval", *argv]
                cli_evaluate()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                buf.write(e.code)
        finally:
            sys.argv = saved
    return _read_outputs(Run(["lm_eval", *argv], rc, buf.getvalue()))


def icdpo_eval(*argv: str, env: dict[str, str | None] | None = None) -> Run:
    """``icdpo-eval ARGV`` in this process (:func:`icdpo_eval.cli.main`)."""
    from icdpo_eval.cli import main

    buf = io.StringIO()
    saved = sys.argv
    with environment({"HF_HUB_OFFLINE": "1", **(env or {})}):
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                rc = main(list(argv))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = saved
    run = Run(["icdpo-eval", *argv], int(rc or 0), buf.getvalue())
    if argv and argv[0] == "run":
        return _read_outputs(run)
    return run


# ------------------------------------------------------------------------------ shared pipelines
# name -> the lm_eval arguments of one run on the tiny twins (--output_path and --log_samples are added)
PIPELINES: dict[str, list[str]] = {
    "icdpo": ["--model", "icdpo", "--model_args", "max_new_tokens=12", "--tasks", "hh_harmless_mini",
              "--limit", "2"],
    "icdpo_s_hat_r": ["--model", "icdpo", "--model_args", "scorer=s_hat,retriever=bm25_sbert,max_new_tokens=8",
                      "--tasks", "hh_harmless_mini", "--limit", "2"],
    "hf_base": ["--model", "hf", "--model_args", "pretrained=embedded:base,dtype=float32", "--device", "cpu",
                "--gen_kwargs", "max_gen_toks=8", "--tasks", "hh_harmless_mini", "--limit", "2"],
    "rm_bon": ["--model", "rm_bon", "--model_args", "n=2,max_new_tokens=8", "--tasks", "hh_harmless_mini",
               "--limit", "2"],
    "rm_aug": ["--model", "rm_aug", "--model_args", "n=2,block_size=4,max_new_tokens=8", "--tasks",
               "hh_harmless_mini", "--limit", "2"],
    # test_pairs.py: every model kind on the preference-accuracy task (loglikelihood path)
    "pairs_icdpo": ["--model", "icdpo", "--model_args", "scorer=s_hat", "--tasks", "hh_harmless_mini_pairs",
                    "--limit", "2"],
    "pairs_rm": ["--model", "rm", "--model_args", "rm=proxy", "--tasks", "hh_harmless_mini_pairs", "--limit", "2"],
    # test_cli_e2e.py (the base row) and test_pairs.py (hf on pairs): stock hf on both tasks, one tokenizer load
    "hf_base_pairs": ["--model", "hf", "--model_args", "pretrained=embedded:base,dtype=float32", "--device", "cpu",
                      "--gen_kwargs", "max_gen_toks=8", "--tasks", "hh_harmless_mini,hh_harmless_mini_pairs",
                      "--limit", "2"],
}
_DONE: dict[str, Run] = {}


def pipeline(name: str, root: Path, twins: Path) -> Run:
    """The one run of pipeline ``name`` in this session (on the twins, its own journal, offline)."""
    if name not in _DONE:
        out = root / name
        env = {"ICDPO_EMBEDDED_DIR": str(twins), "ICDPO_JOURNAL_DIR": str(root / f"{name}-journal")}
        _DONE[name] = lm_eval(*PIPELINES[name], "--output_path", str(out / "out"), "--log_samples", env=env).ok()
    return _DONE[name]
