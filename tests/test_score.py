"""Saved outputs scored without generating them (issue 33): ``icdpo-eval score`` on every format it reads gives the
run's own rewards, loads no policy, matches strictly, fails on bad input with one line naming ``file:line``, reuses
the RM's stored scores; a leaderboard row from outputs; the policy freed before the scorer loads in a normal run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _inproc import icdpo_eval as cli
from _inproc import pipeline

ROOT = Path(__file__).resolve().parents[1]
RELEASED = ROOT / "tests" / "fixtures" / "released_outputs.jsonl"
META = '{"rm": "proxy"}'
EVAL = ROOT / "icdpo_eval" / "data" / "hh_harmless_mini" / "eval.jsonl"


def mini_rows(n: int) -> list[dict]:
    return [json.loads(x) for x in EVAL.read_text(encoding="utf-8").splitlines() if x.strip()][:n]


def results_of(out: Path) -> dict[str, dict]:
    """generator folder -> (results, samples) of an `icdpo-eval score --out` folder."""
    got = {}
    for res in sorted(out.rglob("results_*.json")):
        date = res.stem.removeprefix("results_")
        smp = sorted(res.parent.glob(f"samples_*_{date}.jsonl"))
        got[res.parent.name] = (json.loads(res.read_text()),
                                [json.loads(x) for x in smp[0].read_text().splitlines()] if smp else [])
    return got


@pytest.fixture
def run_out(tmp_path_factory, twins_dir):
    """`lm_eval --model icdpo ... --limit 2 --log_samples` (the shared pipeline) and its output folder."""
    run = pipeline("icdpo", tmp_path_factory.getbasetemp() / "pipelines", twins_dir)
    return run


def test_scoring_a_run_s_samples_gives_the_run_s_rewards_and_loads_no_policy(run_out, tmp_path, monkeypatch):
    from icdpo_eval.engine import WEIGHTS, Engine

    built: list = []
    monkeypatch.setattr(Engine, "__init__", lambda self, *a, **k: built.append(a) or (_ for _ in ()).throw(
        AssertionError("score built an engine")))
    loads = len(WEIGHTS.loads)
    res = cli("score", str(run_out.output_path), "--task", "hh_harmless_mini", "--out", str(tmp_path / "s"),
              "--log_samples", "--metadata", META).ok()
    assert not built and len(WEIGHTS.loads) == loads  # no policy (nor any causal LM) loaded
    ((name, (results, samples)),) = results_of(tmp_path / "s").items()
    want = run_out.results["results"]["hh_harmless_mini"]
    got = results["results"]["hh_harmless_mini"]
    assert got["rm_reward,none"] == pytest.approx(want["rm_reward,none"], abs=1e-6)
    assert got["length,none"] == want["length,none"]
    before = {s["doc_id"]: s["rm_reward"]["reward"] for s in run_out.samples["hh_harmless_mini"]}
    assert {s["doc_id"]: s["rm_reward"]["reward"] for s in samples} == pytest.approx(before, abs=1e-6)
    score = results["config"]["icdpo_eval"]["score"]
    assert score["policy_loaded"] is False and score["counts"]["matched"] == 2 and score["counts"]["unmatched"] == 0
    assert name.startswith("icdpo") and "2 responses scored" in res.out
    # the folder is lm-eval's: the gate and the report read it as they read a run's
    cli("compare", str(tmp_path / "s"), str(tmp_path / "s")).ok()
    cli("report", str(tmp_path / "s"), "--out", str(tmp_path / "page.html")).ok()
    assert "icdpo" in (tmp_path / "page.html").read_text()


def test_every_format_is_read_and_matched(run_out, tmp_path):
    # a plain JSONL by prompt (two generators), an AlpacaEval JSON list, documents.jsonl, the journal, released
    rows = mini_rows(3)
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"prompt": r["prompt"], "response": r[k], "generator": k}) + "\n"
                             for r in rows for k in ("chosen", "rejected")))
    alpaca = tmp_path / "model_outputs.json"
    alpaca.write_text(json.dumps([{"instruction": r["prompt"], "output": r["chosen"], "generator": "mine"}
                                  for r in rows]))
    docs = tmp_path / "lb" / "documents.jsonl"
    docs.parent.mkdir()
    docs.write_text("".join(json.dumps({"row": "ICDPO", "task": "hh_harmless_mini", "doc_id": str(i),
                                        "response": r["chosen"], "reward": 0.0}) + "\n" for i, r in enumerate(rows)))
    journal = tmp_path / "journal" / "abc"
    journal.mkdir(parents=True)
    (journal / "config.json").write_text("{}")
    (journal / "rank0.jsonl").write_text("".join(json.dumps({"key": f"k{i}", "task": "hh_harmless_mini", "doc_id": i,
                                                            "response": r["chosen"]}) + "\n"
                                                 for i, r in enumerate(rows)))
    for src, generators in ((plain, {"chosen", "rejected"}), (alpaca, {"mine"}), (docs.parent, {"ICDPO"}),
                            (journal, {"journal_abc"}), (RELEASED, {"released_outputs"})):
        out = tmp_path / f"out-{src.stem}"
        cli("score", str(src), "--task", "hh_harmless_mini", "--out", str(out), "--metadata", META).ok()
        got = results_of(out)
        assert set(got) == generators, (src, set(got))
        for results, _ in got.values():
            assert results["config"]["icdpo_eval"]["score"]["counts"]["matched"] in (3, 5)
    # the chosen responses, however they arrive, get the same rewards: plain (by prompt) = documents (by doc id)
    by_prompt = results_of(tmp_path / "out-plain")["chosen"][0]["results"]["hh_harmless_mini"]["rm_reward,none"]
    by_id = results_of(tmp_path / "out-lb")["ICDPO"][0]["results"]["hh_harmless_mini"]["rm_reward,none"]
    assert by_prompt == pytest.approx(by_id, abs=1e-9)


def test_the_released_code_s_outputs_match_by_their_prompt():
    """The released format's turns rebuild the prompt as the released code reads it (dialogue=pro)."""
    from icdpo_eval.data.hh import prepare_dialogue
    from icdpo_eval.outputs.formats import read
    from icdpo_eval.outputs.matching import match, task_docs

    rows = read(RELEASED)
    docs = task_docs("hh_harmless_mini", {"rm": "proxy"})
    (m,) = match(rows, "hh_harmless_mini", docs).values()
    # the sample was made from evaluation rows 0-3 and 27 (scripts/make_released_sample.py); row 27's dialogue reads
    # differently as the released code reads it: it matches through that reading, not the raw text
    raw27 = mini_rows(28)[27]["prompt"]
    doc27 = next(i for i, d in enumerate(docs) if d["prompt"] == raw27)
    assert prepare_dialogue(raw27) != raw27 and rows[4].prompt == prepare_dialogue(raw27) != raw27
    assert sorted(m.responses) == [0, 1, 2, 3, doc27]
    assert m.responses[0] == json.loads(RELEASED.read_text().splitlines()[0])["infer"]["t"]


def test_an_unmatched_prompt_fails_naming_its_line(tmp_path):
    rows = mini_rows(3)
    path = tmp_path / "outs.jsonl"
    lines = [{"prompt": r["prompt"], "response": r["chosen"]} for r in rows]
    lines[1]["prompt"] = "\n\nHuman: a dialogue no document has\n\nAssistant:"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    bad = cli("score", str(path), "--task", "hh_harmless_mini", "--metadata", META)
    assert bad.rc == 2
    (line,) = bad.error_lines("icdpo-eval score: error:")
    assert f"{path}:2:" in line and "no document's prompt" in line and "--allow-partial" in line
    ok = cli("score", str(path), "--task", "hh_harmless_mini", "--metadata", META, "--allow-partial",
             "--out", str(tmp_path / "s")).ok()
    ((results, _),) = results_of(tmp_path / "s").values()
    assert results["config"]["icdpo_eval"]["score"]["counts"] | {} == {
        "rows": 3, "matched": 2, "unmatched": 1, "duplicated": 0, "outside_limit": 0, "missing": 0, "empty": 0}
    assert "1 unmatched" in ok.out


@pytest.mark.parametrize("content, message", [
    (b'{"prompt": "x", "response": "y"}\n\xff\xfe\n', ":2: not UTF-8"),
    (b'{"prompt": "x", "response": "y"}\n{"doc_id": 1}\n', ":2: the row has no response"),
    (b'{"doc_id": 0, "response": 5}\n', ":1: `response` must be a string"),
    (b'{"doc_id": 100000, "response": "y"}\n', ":1: doc_id 100000 is out of range"),
    (b'{"doc_id": 0, "response": "a"}\n{"doc_id": 0, "response": "b"}\n', ":2: a second response"),
    (b'{"text": "not a format"}\n', ":1: not one of the formats"),
    (b'{"doc_id": 0, "response": "a"}\nnot json\n', ":2: not a JSON line"),
])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "outs.jsonl"
    path.write_bytes(content)
    bad = cli("score", str(path), "--task", "hh_harmless_mini", "--metadata", META)
    assert bad.rc == 2, bad.out[-2000:]
    (line,) = bad.error_lines("icdpo-eval score: error:")
    assert f"{path}{message}" in line, line


def test_a_limit_needs_every_document_and_empty_responses_are_scored_and_counted(tmp_path):
    rows = mini_rows(3)
    path = tmp_path / "outs.jsonl"
    path.write_text("".join(json.dumps({"doc_id": i, "response": "" if i == 1 else r["chosen"]}) + "\n"
                            for i, r in enumerate(rows)))
    bad = cli("score", str(path), "--task", "hh_harmless_mini", "--limit", "4", "--metadata", META)
    (line,) = bad.error_lines("icdpo-eval score: error:")
    assert "no response for hh_harmless_mini document 3" in line and bad.rc == 2
    cli("score", str(path), "--task", "hh_harmless_mini", "--limit", "3", "--metadata", META, "--out",
        str(tmp_path / "s"), "--log_samples").ok()
    ((results, samples),) = results_of(tmp_path / "s").values()
    assert results["config"]["icdpo_eval"]["score"]["counts"]["empty"] == 1
    assert [s["doc_id"] for s in samples] == [0, 1, 2] and samples[1]["rm_reward"]["reward"] is not None


def test_rescoring_reuses_the_stored_scores_and_a_second_rm_pays_only_itself(tmp_path, monkeypatch):
    from icdpo_eval.judges import reward_model as R
    from icdpo_eval.tasks import metrics

    path = tmp_path / "outs.jsonl"  # responses no earlier run scored (this test's own folder in each)
    path.write_text("".join(json.dumps({"doc_id": i, "response": f"{r['chosen']} ({tmp_path.name})"}) + "\n"
                            for i, r in enumerate(mini_rows(3))))
    R.release_judges()
    metrics.CACHED.clear()
    first = cli("score", str(path), "--task", "hh_harmless_mini", "--metadata", META, "--out", str(tmp_path / "a"))
    first.ok()
    loads = len(R.JUDGE_LOADS)
    R.release_judges()
    again = cli("score", str(path), "--task", "hh_harmless_mini", "--metadata", META, "--out", str(tmp_path / "b"))
    again.ok()
    assert "3 of 3 scores cached" in again.out and len(R.JUDGE_LOADS) == loads  # the RM did not even load
    a = next(iter(results_of(tmp_path / "a").values()))[0]["results"]["hh_harmless_mini"]["rm_reward,none"]
    b = next(iter(results_of(tmp_path / "b").values()))[0]["results"]["hh_harmless_mini"]["rm_reward,none"]
    assert a == b
    off = cli("score", str(path), "--task", "hh_harmless_mini", "--metadata", '{"rm": "proxy", "rm_cache": false}',
              "--out", str(tmp_path / "c")).ok()
    assert "cached" not in off.out and len(R.JUDGE_LOADS) == loads + 1


def test_a_leaderboard_row_from_outputs_sits_beside_a_generated_row(tmp_path):

    outs = tmp_path / "mine.jsonl"
    outs.write_text("".join(json.dumps({"prompt": r["prompt"], "response": r["chosen"]}) + "\n"
                            for r in mini_rows(2)))
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\ntasks: [hh_harmless_mini]\nlimit: 2\nseed: 1234\ngen_kwargs: {max_gen_toks: 4}\n"
                    "metadata: {rm: proxy}\nreference: Base\nrows:\n"
                    "  - {name: Base, model: hf, model_args: {pretrained: 'embedded:base', dtype: float32}}\n"
                    "  - {name: Chosen, outputs: mine.jsonl}\n")
    res = cli("leaderboard", str(spec), "--out", str(tmp_path / "lb")).ok()
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "| Chosen |" in md and "| Base |" in md
    docs = [json.loads(x) for x in (tmp_path / "lb" / "documents.jsonl").read_text().splitlines()]
    assert [d["response"] for d in docs if d["row"] == "Chosen"] == [r["chosen"] for r in mini_rows(2)]
    page = (tmp_path / "lb" / "index.html").read_text()
    assert "Chosen" in page and "cell Chosen / hh_harmless_mini" in res.out
    # a limit the outputs do not cover fails before any cell runs, as one line naming the first missing document
    short = cli("leaderboard", str(spec), "--out", str(tmp_path / "lb3"), "--limit", "3")
    assert short.rc == 2 and "no response for hh_harmless_mini document 2" in short.out
    assert not (tmp_path / "lb3" / "cells").exists()
    # an outputs file that is not there: one line, before anything runs
    shutil.move(str(outs), str(tmp_path / "gone.jsonl"))
    gone = cli("leaderboard", str(spec), "--out", str(tmp_path / "lb2"))
    assert gone.rc == 2 and "row 'Chosen'" in gone.out and "no such file" in gone.out


def test_a_run_frees_its_policy_before_the_reward_model_loads(tmp_path, monkeypatch):
    """`lm_eval --model icdpo`: lm-eval built the model, so its engines let go of their weights when the RM is about
    to load; the results still record the dtype."""
    import gc
    import weakref

    from icdpo_eval import runtime
    from icdpo_eval.engine import Engine
    from icdpo_eval.judges import reward_model as R

    seen: dict = {}
    real_get = R.get_judge

    def spy(*a, **k):
        engines = [e for e in list(runtime._POLICY["engines"] or []) if isinstance(e, Engine)]
        seen["engines"] = len(engines)
        seen["holding"] = sum(e.model is not None for e in engines)
        return real_get(*a, **k)

    made: list = []
    real_init = Engine.__init__

    def track(self, model, *a, **k):
        made.append(weakref.ref(model))
        real_init(self, model, *a, **k)

    monkeypatch.setattr(Engine, "__init__", track)
    monkeypatch.setattr(R, "get_judge", spy)
    from _inproc import lm_eval

    R.release_judges()
    run = lm_eval("--model", "icdpo", "--model_args", "max_new_tokens=4", "--tasks", "hh_harmless_mini", "--limit",
                  "1", "--metadata", '{"rm": "proxy", "rm_cache": false}',  # nothing cached: the RM must load
                  "--output_path", str(tmp_path / "out")).ok()
    assert seen["engines"] >= 1 and seen["holding"] == 0  # every engine of the run had let go
    gc.collect()
    assert made and all(r() is None for r in made)  # and the weights are gone from memory
    assert run.results["config"]["dtype"] == "torch.float32"
