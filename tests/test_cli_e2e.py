"""End to end through the stock ``lm_eval`` CLI, as a user runs it (slow: real embedded models)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _rm_checks import check_rm_reward, rm_items

pytestmark = pytest.mark.slow
LM_EVAL = str(Path(sys.executable).with_name("lm_eval"))


def run_lm_eval(args: list[str], tmp_path: Path, entry: list[str] | None = None, **env: str) -> dict:
    out = tmp_path / "out"
    cmd = [*(entry or [LM_EVAL]), *args, "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(out.rglob("results_*.json"))
    assert results, proc.stderr[-2000:]
    data = json.loads(results[-1].read_text())
    data["_samples"] = {p.name: [json.loads(x) for x in p.read_text().splitlines()]
                        for p in out.rglob("samples_*.jsonl")}
    return data


def test_icdpo_default_on_mini(tmp_path):
    res = run_lm_eval(["--model", "icdpo", "--model_args", "max_new_tokens=24", "--tasks", "hh_harmless_mini",
                       "--limit", "2"], tmp_path)
    r = res["results"]["hh_harmless_mini"]
    assert res["config"]["scorer"] == "s" and res["config"]["method"] == "icdpo"
    (samples,) = res["_samples"].values()
    assert len(samples) == 2 and all(s["resps"][0][0].strip() for s in samples)
    check_rm_reward(r, rm_items(samples), 2)


def test_icdpo_s_hat_bm25_sbert_via_icdpo_eval_run(tmp_path):
    res = run_lm_eval(["--model", "icdpo", "--model_args",
                       "scorer=s_hat,retriever=bm25_sbert,max_new_tokens=16", "--tasks", "hh_harmless_mini",
                       "--limit", "2"], tmp_path, entry=[str(Path(sys.executable).with_name("icdpo-eval")), "run"])
    (samples,) = res["_samples"].values()
    check_rm_reward(res["results"]["hh_harmless_mini"], rm_items(samples), 2)
    assert res["config"]["scorer"] == "s_hat" and res["config"]["retriever"] == "bm25_sbert"


def test_base_row_with_stock_hf_model(tmp_path):
    from icdpo_eval.data.embedded import base_model_path

    res = run_lm_eval(["--model", "hf", "--model_args", f"pretrained={base_model_path()}", "--device", "cpu",
                       "--gen_kwargs", "max_gen_toks=16", "--tasks", "hh_harmless_mini", "--limit", "2"], tmp_path)
    (samples,) = res["_samples"].values()
    check_rm_reward(res["results"]["hh_harmless_mini"], rm_items(samples), 2)


def test_local_data_dir_and_demo_pool_file(tmp_path, shared_hh_test):
    data_dir = tmp_path / "data" / "hh-rlhf" / "harmless-base"
    data_dir.mkdir(parents=True)
    shutil.copy(shared_hh_test, data_dir / "test.jsonl.gz")
    pool = tmp_path / "pool.jsonl"
    with gzip.open(shared_hh_test, "rt") as fh:
        raw = [json.loads(x) for _, x in zip(range(2000), fh)]
    pool.write_text("".join(json.dumps(r) + "\n" for r in raw[-40:]))  # raw HH transcripts are accepted
    res = run_lm_eval(["--model", "icdpo", "--model_args", f"demo_pool={pool},max_new_tokens=8,n=2",
                       "--tasks", "hh_harmless", "--limit", "2"], tmp_path, ICDPO_DATA_DIR=str(tmp_path / "data"))
    (samples,) = res["_samples"].values()
    check_rm_reward(res["results"]["hh_harmless"], rm_items(samples), 2)
    assert res["config"]["demo_pool"] == str(pool)


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
    res = run_lm_eval(["--model", "icdpo", "--model_args", "scorer=s", "--tasks", "toy_harmless_mc",
                       "--include_path", str(task_dir)], tmp_path)
    (samples,) = res["_samples"].values()
    # acc: per document 1 when its label (the chosen response) gets the highest logged score, else 0; the mean
    assert len(samples) == 2
    hits = [float(max(range(2), key=lambda i: float(s["resps"][i][0][0])) == s["doc"]["label"]) for s in samples]
    assert [s["acc"] for s in samples] == hits
    assert res["results"]["toy_harmless_mc"]["acc,none"] == pytest.approx(sum(hits) / 2)
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
