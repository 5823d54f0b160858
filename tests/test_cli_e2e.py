"""End to end through the stock ``lm_eval`` CLI (and ``icdpo-eval run``), as a user runs it, in this process.

Every test but one runs on the tiny random twins of the embedded models (conftest ``twins_dir``): the point is
the plumbing (model args, config recorded, rewards logged on the right scale, cached scores equal a plain
forward pass), which random weights exercise as well as trained ones, at a fraction of the cost.

``test_real_icdpo_limit_1`` is the one run on the REAL embedded models (marked ``real``): ``lm_eval --model
icdpo --tasks hh_harmless_mini --limit 1`` exactly as the README shows it. It needs the trained weights because
what it checks only trained weights give: the sampled candidates are English text that ends on its own (the
instruction-tuned teacher's turn end / the base model's EOS) well before the task's 128-token cap, scored by
the proxy RM fitted on the real MiniLM encoder (``proxy:bt-minilm@...``), i.e. the path a user runs, not a twin.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
from _inproc import PIPELINES, icdpo_eval, lm_eval
from _rm_checks import check_rm_reward, proxy_rm_bound, rm_items


def run(tmp_path: Path, *argv: str, entry=lm_eval, **env: str):
    """``lm_eval ARGV --output_path tmp_path/out --log_samples`` in this process; must exit 0 with results."""
    res = entry(*argv, "--output_path", str(tmp_path / "out"), "--log_samples", env=env).ok()
    assert res.results is not None, res.out[-3000:]
    return res


def test_icdpo_default_on_mini(pipeline, twins_dir):
    res = pipeline("icdpo")
    cfg = res.results["config"]
    assert cfg["scorer"] == "s" and cfg["method"] == "icdpo" and cfg["model_args"] == {"max_new_tokens": 12}
    assert cfg["icdpo_eval"]["environment"]["ICDPO_EMBEDDED_DIR"] == str(twins_dir)  # the twins, recorded
    samples = res.samples["hh_harmless_mini"]
    assert len(samples) == 2 and all(s["resps"][0][0].strip() for s in samples)
    check_rm_reward(res.results["results"]["hh_harmless_mini"], rm_items(samples), 2)


def test_icdpo_s_hat_bm25_sbert_via_icdpo_eval_run(tmp_path):
    res = run(tmp_path, *PIPELINES["icdpo_s_hat_r"], entry=lambda *a, env: icdpo_eval("run", *a, env=env))
    check_rm_reward(res.results["results"]["hh_harmless_mini"], rm_items(res.samples["hh_harmless_mini"]), 2)
    cfg = res.results["config"]
    assert cfg["scorer"] == "s_hat" and cfg["retriever"] == "bm25_sbert" and cfg["method"] == "icdpo"


def test_base_row_with_stock_hf_model(pipeline, twins_dir):
    res = pipeline("hf_base_pairs")  # hf_base's arguments, with the pairs task (test_pairs.py) in the same run
    assert res.results["config"]["model_args"]["pretrained"] == str(twins_dir / "base")  # embedded:base resolved
    samples = res.samples["hh_harmless_mini"]
    check_rm_reward(res.results["results"]["hh_harmless_mini"], rm_items(samples), 2)


def test_local_data_dir_and_demo_pool_file(tmp_path, shared_hh_test):
    data_dir = tmp_path / "data" / "hh-rlhf" / "harmless-base"
    data_dir.mkdir(parents=True)
    shutil.copy(shared_hh_test, data_dir / "test.jsonl.gz")
    pool = tmp_path / "pool.jsonl"
    with gzip.open(shared_hh_test, "rt") as fh:
        raw = [json.loads(x) for _, x in zip(range(2000), fh)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in raw[-40:]))  # raw HH transcripts are accepted
    res = run(tmp_path, "--model", "icdpo", "--model_args", f"demo_pool={pool},max_new_tokens=8,n=2",
              "--tasks", "hh_harmless", "--limit", "2", ICDPO_DATA_DIR=str(tmp_path / "data"))
    samples = res.samples["hh_harmless"]
    check_rm_reward(res.results["results"]["hh_harmless"], rm_items(samples), 2)
    assert res.results["config"]["demo_pool"] == str(pool)
    # the documents are the local file's rows (not the hub's, not the vendored mini split)
    with gzip.open(shared_hh_test, "rt") as fh:
        local = {json.loads(x)["chosen"].rsplit("\n\nAssistant:", 1)[0] for x in fh}
    assert all(s["doc"]["prompt"].removesuffix("\n\nAssistant:") in local for s in samples)


def test_foreign_multiple_choice_task_ranks_by_scorer(tmp_path, base_engine):
    from test_teacher import full_forward_ids

    from icdpo_eval.data.datasets import load_pairs
    from icdpo_eval.method.prompts import zero_shot_context
    from icdpo_eval.method.retrieval import make_retriever
    from icdpo_eval.method.scorers import positive_context

    rows = load_pairs("hh-rlhf-mini", None, "eval")[:2]
    docs = [{"prompt": r["prompt"], "choices": [r["chosen"], r["rejected"]], "label": 0} for r in rows]
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    yaml = (Path(__file__).parent / "fixtures" / "mc_task" / "toy_mc.yaml").read_text()
    (task_dir / "toy_mc.yaml").write_text(yaml.replace("PLACEHOLDER", str(tmp_path / "mc.jsonl")))
    res = run(tmp_path, "--model", "icdpo", "--model_args", "scorer=s", "--tasks", "toy_harmless_mc",
              "--include_path", str(task_dir))
    samples = res.samples["toy_harmless_mc"]
    # acc: per document 1 when its label (the chosen response) gets the highest logged score, else 0; the mean
    assert len(samples) == 2
    hits = [float(max(range(2), key=lambda i: float(s["resps"][i][0][0])) == s["doc"]["label"]) for s in samples]
    assert [s["acc"] for s in samples] == hits
    assert res.results["results"]["toy_harmless_mc"]["acc,none"] == pytest.approx(sum(hits) / 2)
    # the logged loglikelihoods are S = log π(c | d+, x) − log π(c | x), with the same demos, each term over
    # " " + c followed by EOS (preset=paper, as released)
    pool = load_pairs("hh-rlhf-mini", None, "pool")
    retr = make_retriever("random", pool, seed=1234)
    eng = base_engine

    def lp(ctx: str, cont: str) -> float:
        y = eng.encode_continuation(cont) + [eng.tok.eos_token_id]
        return full_forward_ids(eng, eng.encode_context(ctx) + y, len(y))

    for s in samples:
        x = s["doc"]["prompt"]
        demos = [pool[i] for i in retr.retrieve(x, 2)]
        for choice, resp in zip(s["doc"]["choices"], s["resps"]):
            want = lp(positive_context(x, demos), " " + choice) - lp(zero_shot_context(x), " " + choice)
            assert float(resp[0][0]) == pytest.approx(want, abs=1e-3)


@pytest.mark.real
def test_real_icdpo_limit_1(tmp_path):
    """``lm_eval --model icdpo --tasks hh_harmless_mini --limit 1`` on the real embedded models (module docstring)."""
    res = run(tmp_path, "--model", "icdpo", "--tasks", "hh_harmless_mini", "--limit", "1")
    cfg = res.results["config"]
    assert (cfg["method"], cfg["scorer"], cfg["pretrained"], cfg["n"]) == ("icdpo", "s", "embedded:base", 3)
    assert "ICDPO_EMBEDDED_DIR" not in cfg["icdpo_eval"]["environment"]  # the real models, not the twins
    r = res.results["results"]["hh_harmless_mini"]
    (sample,) = res.samples["hh_harmless_mini"]
    check_rm_reward(r, rm_items([sample]), 1)
    assert r["rm,none"] == proxy_rm_bound()[0] and r["rm,none"].startswith("proxy:bt-minilm@")
    # trained weights: English prose that stops on its own, far below the task's 128-token cap
    cap = cfg["sampling"]["hh_harmless_mini"]["max_new_tokens"]
    assert cap == [128, "task"] and 0 < r["length,none"] < 64, r["length,none"]
    answer = sample["resps"][0][0]
    words = re.findall(r"[A-Za-z]+", answer)
    assert len(words) >= 2 and sum(map(len, words)) >= 0.6 * len(answer.strip()), answer
