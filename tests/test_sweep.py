"""Sweeps and equal compute (issue 32): a spec row swept over one option becomes one row per value; a sweep over N
draws each document once (its largest N) and every smaller N is the first N of that draw, equal to a plain run;
compute columns for every row; ``compare-at-budget`` interpolates as documented."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from _inproc import icdpo_eval as icdpo_eval_cli
from _inproc import lm_eval

from icdpo_eval import leaderboard as lb
from icdpo_eval.leaderboard.budget import Point, at_budget, interpolate
from icdpo_eval.method.candidates import CandidateStore


def _spec(tmp_path: Path, rows: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\ntasks: [hh_harmless_mini]\nlimit: 2\nseed: 1234\ngen_kwargs: {max_gen_toks: 6}\n"
                    "metadata: {rm: proxy}\nrows:\n" + rows)
    return spec


def test_a_swept_row_is_one_row_per_value(tmp_path):
    spec = lb.load_spec(_spec(tmp_path, "  - {name: BoN, model: rm_bon, model_args: {teacher: 'embedded:teacher'}, "
                                        "sweep: {n: [1, 2, 4]}}\n  - {name: ICDPO, model: icdpo}\n"))
    assert [r.name for r in spec.rows] == ["BoN (n=1)", "BoN (n=2)", "BoN (n=4)", "ICDPO"]
    assert [r.model_args for r in spec.rows[:3]] == [{"teacher": "embedded:teacher", "n": v} for v in (1, 2, 4)]
    assert {r.group for r in spec.rows[:3]} == {"BoN"} and spec.rows[3].group is None
    assert len({c.key() for c in lb.cells_of(spec)}) == 4  # one cell each
    from icdpo_eval.leaderboard.board import largest_n_first

    assert [c.row for c in largest_n_first(spec, lb.cells_of(spec))] == ["BoN (n=4)", "BoN (n=2)", "BoN (n=1)",
                                                                          "ICDPO"]


@pytest.mark.parametrize("row, message", [
    ("{name: B, model: rm_bon, sweep: {n: [1, 2], k: [1]}}", "ONE option"),
    ("{name: B, model: rm_bon, sweep: {n: []}}", "non-empty list"),
    ("{name: B, model: rm_bon, sweep: {n: [2, 2]}}", "repeats"),
    ("{name: B, model: rm_bon, model_args: {n: 3}, sweep: {n: [1, 2]}}", "both in model_args and swept"),
    ("{name: B, model: rm_bon, sweeps: {n: [1, 2]}}", "unknown key(s) sweeps"),
])
def test_a_bad_sweep_is_one_line_naming_the_row(tmp_path, row, message):
    with pytest.raises(lb.SpecError, match="row 'B'") as e:
        lb.load_spec(_spec(tmp_path, f"  - {row}\n"))
    assert message in str(e.value)


def test_a_swept_value_the_model_rejects_fails_before_anything_runs(tmp_path):
    path = _spec(tmp_path, "  - {name: B, model: rm_bon, sweep: {n: [2, 0]}}\n")
    with pytest.raises(lb.SpecError, match=r"row 'B \(n=0\)'"):
        lb.validate_spec(lb.load_spec(path), path)


def test_interpolation_is_linear_in_log_compute_and_never_extrapolates():
    pts = [(100.0, 1.0), (400.0, 3.0), (1600.0, 4.0)]
    assert interpolate(pts, 200.0, 0.0) == pytest.approx(2.0)  # half way in log between 100 and 400
    assert interpolate(pts, 800.0, 0.0) == pytest.approx(3.5)
    assert interpolate(pts, 400.0, 0.0) == pytest.approx(3.0)
    assert interpolate(pts, 50.0, 0.0) is None and interpolate(pts, 3200.0, 0.0) is None
    assert interpolate([(100.0, 2.0)], 104.0, 0.05) == 2.0 and interpolate([(100.0, 2.0)], 120.0, 0.05) is None


def test_at_budget_reads_each_curve_at_the_reference_cost_with_a_paired_ci():
    docs = [str(i) for i in range(8)]

    def point(row, value, reward, compute):
        return Point(row, value, {f"t/{d}": (reward + 0.1 * int(d), compute) for d in docs})

    curves = {"BoN": [point("BoN (n=1)", 1, 1.0, 100.0), point("BoN (n=4)", 4, 3.0, 400.0)],
              "ICDPO": [point("ICDPO", None, 2.5, 200.0)]}
    res = at_budget(curves, None, "ICDPO", iters=200)
    assert res["budget"] == pytest.approx(200.0)
    got = {g["group"]: g for g in res["groups"]}
    assert got["BoN"]["value"] == pytest.approx(2.0 + 0.35)  # 1.35 and 3.35 means, half way in log
    assert got["BoN"]["diff"] == pytest.approx(-0.5) and got["ICDPO"]["diff"] == pytest.approx(0.0)
    lo, hi = got["BoN"]["ci"]
    assert lo <= got["BoN"]["value"] <= hi and hi - lo > 0  # documents differ: the resamples move the means
    assert got["BoN"]["diff_ci"] == [pytest.approx(-0.5), pytest.approx(-0.5)]  # paired: the spread cancels
    far = at_budget(curves, 1000.0, None, iters=10)
    assert all(g["value"] is None for g in far["groups"])


def test_a_sweep_over_n_draws_once_and_its_largest_n_equals_a_plain_run(tmp_path, monkeypatch):
    from icdpo_eval.engine import WEIGHTS
    from icdpo_eval.judges.reward_model import release_judges
    from icdpo_eval.method import candidates

    fresh = CandidateStore(tmp_path / "candidates.sqlite")
    monkeypatch.setattr(candidates, "default_store", lambda: fresh)
    WEIGHTS.retain(set())
    release_judges()
    spec = lb.load_spec(_spec(tmp_path, "  - {name: Base, model: hf, model_args: {pretrained: 'embedded:base', "
                                        "dtype: float32}}\n  - {name: BoN, model: rm_bon, sweep: {n: [1, 2, 4]}}\n"))
    out = tmp_path / "lb"
    lb.run_leaderboard(spec, out)
    log = {r["row"]: r for r in json.loads((out / "run.json").read_text())}
    assert log["BoN (n=4)"]["candidates"] == {"reused": 0, "sampled": 2}  # drawn once, at the largest N
    assert log["BoN (n=2)"]["candidates"] == log["BoN (n=1)"]["candidates"] == {"reused": 2, "sampled": 0}
    with open(out / "leaderboard.csv", newline="") as fh:
        table = {r["row"]: r for r in csv.DictReader(fh)}
    for name in ("Base", "BoN (n=1)", "BoN (n=2)", "BoN (n=4)"):  # compute for every row, the hf row included
        assert float(table[name]["forward_tokens"]) > 0 and float(table[name]["generated_tokens"]) > 0
    assert float(table["BoN (n=4)"]["reused_forward_tokens"]) == 0
    assert float(table["BoN (n=2)"]["reused_forward_tokens"]) > 0  # its draw came from the N = 4 one
    # the reused N = 1 draw costs what one plain sample does: the hf row's counts (one sample each, no EOS at 6
    # tokens on the twin) equal it
    assert float(table["BoN (n=1)"]["forward_tokens"]) == float(table["Base"]["forward_tokens"])
    # the N = 4 row equals a plain N = 4 run: responses, rewards and compute
    plain = lm_eval("--model", "rm_bon", "--model_args", "n=4,reuse_candidates=false,resume=false", "--tasks",
                    "hh_harmless_mini", "--limit", "2", "--gen_kwargs", "max_gen_toks=6", "--metadata",
                    '{"rm": "proxy"}', "--output_path", str(tmp_path / "plain"), "--log_samples").ok()
    docs = [json.loads(x) for x in (out / "documents.jsonl").read_text().splitlines()]
    for row in ("BoN (n=4)", "BoN (n=2)"):
        mine = {d["doc_id"]: d for d in docs if d["row"] == row}
        for s in plain.samples["hh_harmless_mini"]:
            d = mine[str(s["doc_id"])]
            if row == "BoN (n=4)":
                assert d["response"] == s["filtered_resps"][0]
                assert d["reward"] == pytest.approx(s["rm_reward"]["reward"], abs=1e-6)
                assert d["scores"] == pytest.approx(s["icdpo_eval"]["scores"], abs=1e-4)
            else:  # the first two candidates of the N = 4 draw
                assert d["scores"] == pytest.approx(s["icdpo_eval"]["scores"][:2], abs=1e-4)
    cell = next(json.loads(p.read_text()) for p in (out / "cells").glob("*/cell.json")
                if json.loads(p.read_text())["row"] == "BoN (n=4)")
    for s in plain.samples["hh_harmless_mini"]:
        assert cell["compute"][str(s["doc_id"])]["forward_tokens"] == s["icdpo_eval"]["compute"]["forward_tokens"]
    # compare-at-budget on the folder: at BoN (n=2)'s own cost its curve reads its own value
    res = icdpo_eval_cli("compare-at-budget", str(out), "--at", "BoN (n=2)", "--json", "--iters", "50").ok()
    got = {g["group"]: g for g in json.loads(res.out)["groups"]}
    assert got["BoN"]["value"] == pytest.approx(float(table["BoN (n=2)"]["value"]), abs=1e-6)
    assert math.isclose(got["BoN"]["diff"], 0.0, abs_tol=1e-9)
