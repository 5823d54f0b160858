"""Scale-out: the per-document result journal (resume after a kill) and data parallel under accelerate."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from icdpo_eval.errors import OptionError
from icdpo_eval.models import journal as J
from icdpo_eval.models.base import MethodLM
from icdpo_eval.options import BATCH_SIZE, RESUME, SEED, Option, Options

LM_EVAL = str(Path(sys.executable).parent / "lm_eval")
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


# -- real runs on the embedded model ---------------------------------------------------------------------
ARGS = ["--model", "icdpo", "--tasks", "hh_harmless_mini", "--log_samples", "--metadata", '{"rm": "proxy"}']


def responses(out: Path) -> tuple[dict[int, str], float]:
    (samples,) = glob.glob(str(out / "*" / "samples_*.jsonl"))
    (results,) = glob.glob(str(out / "*" / "results_*.json"))
    docs = {r["doc_id"]: r["filtered_resps"][0] for r in map(json.loads, open(samples))}
    return docs, json.load(open(results))["results"]["hh_harmless_mini"]["rm_reward,none"]


def run(cmd: list[str], journal: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ICDPO_JOURNAL_DIR": str(journal)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, **kw)


def journaled(journal: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in journal.glob("*/rank*.jsonl"))


@pytest.mark.slow
def test_kill_and_resume_generates_only_the_rest(tmp_path):
    limit, model_args = "6", "max_new_tokens=16"
    journal = tmp_path / "journal"
    cmd = [LM_EVAL, *ARGS, "--batch_size", "1", "--model_args", model_args, "--limit", limit]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ICDPO_JOURNAL_DIR": str(journal)}
    proc = subprocess.Popen([*cmd, "--output_path", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while journaled(journal) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = journaled(journal)
    assert 2 <= before < 6
    resumed = run([*cmd, "--output_path", str(tmp_path / "resumed")], journal)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert journaled(journal) == 6  # the rerun generated (and journaled) exactly the missing documents
    assert f"{before} of 6 documents resumed, {6 - before} to generate" in resumed.stderr
    fresh = run([*cmd[:-4], "--model_args", model_args + ",resume=false", "--limit", limit,
                 "--output_path", str(tmp_path / "fresh")], tmp_path / "unused")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert not (tmp_path / "unused").exists()  # resume=false writes no journal
    assert responses(tmp_path / "resumed") == responses(tmp_path / "fresh")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which(ACCELERATE) is None and not Path(ACCELERATE).exists(), reason="accelerate CLI")
def test_two_processes_equal_one(tmp_path):
    args = [*ARGS, "--model_args", "max_new_tokens=16", "--limit", "4"]
    one = run([LM_EVAL, *args, "--output_path", str(tmp_path / "one")], tmp_path / "j1")
    assert one.returncode == 0, one.stderr[-3000:]
    two = run([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "-m", "lm_eval", *args,
               "--output_path", str(tmp_path / "two")], tmp_path / "j2")
    assert two.returncode == 0, two.stderr[-3000:]
    # each rank generated its own shard (rank0 and rank1 journals, two documents each), one results file
    per_rank = sorted(len(p.read_text().splitlines()) for p in (tmp_path / "j2").glob("*/rank*.jsonl"))
    assert per_rank == [2, 2]
    assert len(glob.glob(str(tmp_path / "two" / "*" / "results_*.json"))) == 1
    (docs2, value2), (docs1, value1) = responses(tmp_path / "two"), responses(tmp_path / "one")
    assert docs2 == docs1  # the same responses, document by document
    # the same reward up to fp32 reduction order: accelerate runs each process on one thread (OMP_NUM_THREADS=1)
    assert value2 == pytest.approx(value1, rel=1e-6)
