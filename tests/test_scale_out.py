"""Scale-out: the per-document result journal (resume after a kill) and data parallel under accelerate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from icdpo_eval.config.options import BATCH_SIZE, RESUME, SEED, Option, Options
from icdpo_eval.errors import OptionError
from icdpo_eval.leaderboard.tables import without_seconds
from icdpo_eval.models import journal as J
from icdpo_eval.models.base import MethodLM

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


# -- the journal itself ---------------------------------------------------------------------------------
def test_journal_round_trip_and_cut_line(tmp_path, caplog):
    j = J.Journal({"method": "x", "seed": 1}, root=tmp_path)
    k0, k1 = J.Journal.doc_key("t", 0, "p0", {}), J.Journal.doc_key("t", 1, "p1", {})
    assert k0 != k1 and k0 == J.Journal.doc_key("t", 0, "p0", {})
    assert J.Journal.doc_key("t", 0, "p0", {"max_gen_toks": 8}) != k0  # generation kwargs are part of the key
    j.add([{"key": k0, "response": "a", "scores": [float("-inf"), 1.5]}])
    with j.path.open("a") as fh:
        fh.write('{"key": "' + k1 + '", "respo')  # a line cut by SIGKILL mid-write
    again = J.Journal({"seed": 1, "method": "x"}, root=tmp_path)  # same config, keys in another order
    assert again.dir == j.dir and again.get(k0)["response"] == "a" and again.get(k1) is None
    assert again.get(k0)["scores"][0] == float("-inf")
    assert "skipping unreadable line" in caplog.text
    assert J.Journal({"method": "x", "seed": 2}, root=tmp_path).get(k0) is None  # a changed config


def test_journal_keyed_by_code(tmp_path, monkeypatch):
    assert len(J.code_fingerprint()) == 64
    a = J.Journal({"m": 1}, root=tmp_path)
    monkeypatch.setattr(J, "code_fingerprint", lambda: "other code")
    assert J.Journal({"m": 1}, root=tmp_path).dir != a.dir  # a changed line of code never reuses an entry


FAKE = Options("fake", Option("tag", "str", "v1", "what the fake generator writes before each prompt"),
               RESUME, BATCH_SIZE.with_default(2), SEED)


class FakeLM(MethodLM):
    """MethodLM's request plumbing (options, journal, batching) over a generator that records what it was asked."""

    method = "fake"
    OPTIONS = FAKE

    def load(self) -> None:
        self.calls: list[int] = []
        self.engine = SimpleNamespace(generation_defaults=lambda: (1.0, 50), max_length=10_000,
                                      encode_context=lambda text: text.split())

    def _generate_batch(self, task, reqs, gk):
        self.calls += [r.doc_id for r in reqs]
        return [f"{self.cfg.tag}:{r.args[0]}" for r in reqs]


def requests(n: int) -> list:
    return [SimpleNamespace(args=(f"prompt {i}", {"max_gen_toks": 4}), doc_id=i, task_name="t", doc={})
            for i in range(n)]


def test_generate_until_skips_journaled_documents(tmp_path, monkeypatch):
    monkeypatch.setenv("ICDPO_JOURNAL_DIR", str(tmp_path))
    first = FakeLM()
    out = first.generate_until(requests(3), disable_tqdm=True)
    assert first.calls == [0, 1, 2]
    again = FakeLM()
    assert again.generate_until(requests(5), disable_tqdm=True) == out + ["v1:prompt 3", "v1:prompt 4"]
    assert again.calls == [3, 4]  # only the documents the journal lacks
    off = FakeLM(resume=False)
    off.generate_until(requests(2), disable_tqdm=True)
    assert off.calls == [0, 1]
    changed = FakeLM(tag="v2")
    assert changed.generate_until(requests(1), disable_tqdm=True) == ["v2:prompt 0"] and changed.calls == [0]


def test_resume_is_a_model_arg():
    assert FakeLM(resume="false").resume is False and FakeLM().resume is True
    with pytest.raises(OptionError, match="model_arg resume='maybe': must be true | false"):
        FakeLM(resume="maybe")
    with pytest.raises(OptionError, match="unknown --model fake model_arg.*resum"):
        FakeLM(resum="true")


# -- the processes: a deterministic kill, then resume; data parallel under accelerate ----------------------
# These start real processes (a kill must kill one; accelerate must launch two); everything runs on the twins.
ARGS = ["--model", "icdpo", "--tasks", "hh_harmless_mini", "--log_samples", "--metadata", '{"rm": "proxy"}']

# a run that kills itself (SIGKILL, no cleanup) right after its K-th journaled document: no timing race
KILL_AFTER = """
import os, signal, sys
from icdpo_eval.models import journal
k, add = int(sys.argv[1]), journal.Journal.add
def add_then_die(self, records):
    add(self, records)
    if len(self.entries) >= k:
        os.kill(os.getpid(), signal.SIGKILL)
journal.Journal.add = add_then_die
sys.argv = ["lm_eval", *sys.argv[2:]]
from lm_eval.__main__ import cli_evaluate
cli_evaluate()
"""


def responses(run) -> dict[int, str]:
    return {s["doc_id"]: s["filtered_resps"][0] for s in run.samples["hh_harmless_mini"]}


def journaled(journal: Path) -> dict[str, int]:
    """rank file -> journaled documents, for one config's journal (``journal/<hash>/``) or all of them."""
    files = sorted(journal.glob("rank*.jsonl")) or sorted(journal.glob("*/rank*.jsonl"))
    return {str(p.relative_to(journal)) if len(files) > 1 else p.name: len(p.read_text().splitlines())
            for p in files}


def test_kill_and_resume_generates_only_the_rest(tmp_path, twins_dir):
    from _inproc import lm_eval

    journal = tmp_path / "journal"
    args = [*ARGS, "--batch_size", "1", "--model_args", "max_new_tokens=6", "--limit", "4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ICDPO_JOURNAL_DIR": str(journal),
           "ICDPO_EMBEDDED_DIR": str(twins_dir)}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER, "2", *args, "--output_path", str(tmp_path / "k")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert journaled(journal) == {"rank0.jsonl": 2}  # two documents journaled before the kill, nothing after
    resumed = lm_eval(*args, "--output_path", str(tmp_path / "resumed"), env={"ICDPO_JOURNAL_DIR": str(journal)}).ok()
    assert "2 of 4 documents resumed, 2 to generate" in resumed.out
    assert journaled(journal) == {"rank0.jsonl": 4}  # the rerun generated (and journaled) exactly the missing two
    fresh = lm_eval(*args[:-4], "--model_args", "max_new_tokens=6,resume=false", "--limit", "4",
                    "--output_path", str(tmp_path / "fresh"), env={"ICDPO_JOURNAL_DIR": str(tmp_path / "unused")}).ok()
    assert not (tmp_path / "unused").exists()  # resume=false writes no journal
    assert responses(resumed) == responses(fresh) and len(responses(fresh)) == 4


def test_journal_keyed_by_library_versions(tmp_path, monkeypatch):
    """A dependency upgrade with an unchanged tree never resumes a stored document."""
    a = J.Journal({"m": 1}, root=tmp_path)
    assert set(J.library_versions()) >= {"torch", "transformers", "lm_eval"}
    upgraded = {**J.library_versions(), "torch": "9.9"}
    monkeypatch.setattr(J, "library_versions", lambda: upgraded)
    assert J.Journal({"m": 1}, root=tmp_path).dir != a.dir


def _documented(doc: str, start: str) -> list[str]:
    """The documented command of ``doc`` that starts with ``start`` (test_doc_commands tags it as run here)."""
    import shlex

    from test_doc_commands import ROOT, commands

    (cmd,) = [c for c, _ in commands(ROOT / doc) if c.startswith(start)]
    return shlex.split(cmd, comments=True)


@pytest.mark.skipif(not Path(ACCELERATE).exists(), reason="accelerate CLI")
def test_a_leaderboard_on_two_processes_equals_one(tmp_path, twins_dir):
    """docs/leaderboard.md's `accelerate launch ... leaderboard` on a tiny two-row spec: each rank generates its own
    shard of every row (each rank's journal holds its documents), and the tables equal one process's."""
    from _inproc import icdpo_eval

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\ntasks: [hh_harmless_mini]\nlimit: 4\nseed: 1234\ngen_kwargs: {max_gen_toks: 6}\n"
                    "metadata: {rm: proxy}\nmodel_defaults: {icdpo: {reuse_candidates: false}, "
                    "length_bon: {reuse_candidates: false}}\nrows:\n"
                    "  - {name: S, model: icdpo, model_args: {scorer: s}}\n"
                    "  - {name: Longest, model: length_bon, model_args: {pick: longest, n: 2}}\n")
    argv = _documented("docs/leaderboard.md", "accelerate launch --multi_gpu --num_processes 2")
    assert _documented("README.md", "accelerate launch --multi_gpu --num_processes 2") == argv  # the same line
    assert argv[argv.index("leaderboard") + 1] == "leaderboards/mini.yaml"
    argv[argv.index("leaderboard") + 1] = str(spec)
    argv[argv.index("--out") + 1] = str(tmp_path / "two")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ICDPO_EMBEDDED_DIR": str(twins_dir),
           "ICDPO_JOURNAL_DIR": str(tmp_path / "j2")}
    two = subprocess.run([ACCELERATE, *argv[1:]], capture_output=True, text=True, env=env, timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]
    # every row ran data parallel: two journals per row (one per rank), two of the four documents in each
    per_row = [sorted(journaled(d.parent).values()) for d in (tmp_path / "j2").glob("*/config.json")]
    assert per_row == [[2, 2], [2, 2]], per_row
    one = icdpo_eval("leaderboard", str(spec), "--out", str(tmp_path / "one"),
                     env={"ICDPO_JOURNAL_DIR": str(tmp_path / "j1")}).ok()
    assert sorted(journaled(tmp_path / "j1").values()) == [4, 4], one.out[-2000:]
    for name in ("documents.jsonl", "leaderboard.csv", "leaderboard.md"):  # every count equal, only seconds differ
        assert without_seconds(tmp_path / "two" / name) == without_seconds(tmp_path / "one" / name), name

