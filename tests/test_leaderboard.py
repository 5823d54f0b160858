"""Leaderboard: resume, outputs and layout on a fake cell runner (no model is loaded); one cell through the real
runner on the tiny twins."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
from _rm_checks import check_rm_reward, rm_items

from icdpo_eval import leaderboard as lb
from icdpo_eval.errors import UserError
from icdpo_eval.leaderboard import board

SPEC = """
name: toy
tasks: [hh_harmless, hh_helpful]
limit: 4
seed: 7
gen_kwargs: {max_gen_toks: 16}
reference: Base
model_defaults:
  icdpo: {seed: 7}
rows:
  - {name: Base, model: hf, model_args: {pretrained: "embedded:base"}}
  - {name: ICDPO, model: icdpo, model_args: {scorer: "${scorer}"}}
vars: {scorer: s}
"""

# per-document rewards (reward, not x100) for each (row, task)
REWARDS = {("Base", "hh_harmless"): [0.1, 0.2, 0.0, 0.3], ("Base", "hh_helpful"): [-0.5, -0.4, -0.6, -0.3],
           ("ICDPO", "hh_harmless"): [0.5, 0.6, 0.4, 0.7], ("ICDPO", "hh_helpful"): [0.1, 0.0, 0.2, 0.3]}


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, cell: lb.Cell) -> dict[str, Any]:
        self.calls.append((cell.row, cell.task))
        rewards = REWARDS[(cell.row, cell.task)]
        samples = [{"doc_id": i, "rm_reward": {"prompt": "p", "response": "r", "reward": r, "rm": "fake"}}
                   for i, r in enumerate(rewards)]
        return {"results": {cell.task: {"rm_reward,none": 100 * sum(rewards) / len(rewards),
                                        "rm,none": "fake-rm"}},
                "higher_is_better": {cell.task: {"rm_reward": True, "rm": True}},
                "config": {"model": cell.model, "model_args": lb.kv_string(cell.model_args)},
                "samples": {cell.task: samples}}


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake cells load no model: the runner's freeing of model memory after each cell (a full gc.collect,
    most of a second in a session holding real tokenizers) is skipped."""
    import gc

    monkeypatch.setattr(gc, "collect", lambda *a: 0)


@pytest.fixture
def no_chart(no_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """For the tests that check no chart: the PNG chart and the HTML page (matplotlib, seconds per run) are not
    drawn. test_outputs_layout_total_and_png and test_one_cell_leaderboard draw them."""
    monkeypatch.setattr(board, "write_png", lambda *a, **k: None)
    monkeypatch.setattr(board, "write_page", lambda *a, **k: None)


@pytest.fixture
def spec(tmp_path: Path) -> lb.Spec:
    p = tmp_path / "spec.yaml"
    p.write_text(SPEC)
    return lb.load_spec(p)


def test_spec_vars_defaults_and_keys(spec: lb.Spec, tmp_path: Path) -> None:
    assert spec.rows[1].model_args == {"seed": 7, "scorer": "s"}
    keys = {c.key() for c in lb.cells_of(spec)}
    assert len(keys) == 4
    p = tmp_path / "spec.yaml"
    other = lb.load_spec(p, {"scorer": "s_hat"})
    assert lb.cells_of(other)[2].key() != lb.cells_of(spec)[2].key()  # changed config -> new key
    assert lb.cells_of(other)[0].key() == lb.cells_of(spec)[0].key()  # untouched row -> same key


def test_resume_does_not_rerun_finished_cells(spec: lb.Spec, tmp_path: Path, no_chart: None) -> None:
    out = tmp_path / "out"
    runner = FakeRunner()
    lb.run_leaderboard(spec, out, runner=runner)
    assert len(runner.calls) == 4
    lb.run_leaderboard(spec, out, runner=runner)
    assert len(runner.calls) == 4  # all reused
    spec.rows[1] = lb.Row("ICDPO", "icdpo", {"seed": 7, "scorer": "s_hat"})
    lb.run_leaderboard(spec, out, runner=runner)
    assert runner.calls[4:] == [("ICDPO", "hh_harmless"), ("ICDPO", "hh_helpful")]
    lb.run_leaderboard(spec, out, runner=runner, rerun=True)
    assert len(runner.calls) == 10


def test_unfinished_cell_reruns(spec: lb.Spec, tmp_path: Path, no_chart: None) -> None:
    out = tmp_path / "out"
    runner = FakeRunner()
    lb.run_leaderboard(spec, out, runner=runner)
    (out / "cells" / lb.cells_of(spec)[0].key() / "cell.json").unlink()  # e.g. killed mid-cell
    lb.run_leaderboard(spec, out, runner=runner)
    assert runner.calls[4:] == [("Base", "hh_harmless")]


def test_outputs_layout_total_and_png(spec: lb.Spec, tmp_path: Path, no_model: None) -> None:
    out = tmp_path / "out"
    entries = lb.run_leaderboard(spec, out, runner=FakeRunner())
    png = out / "leaderboard.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    by = {(e.row, e.column): e for e in entries}
    assert [c for c, _ in lb.columns_of(spec)] == ["Harmless", "Helpful", "Total"]
    assert by[("Base", "Harmless")].value == pytest.approx(15.0)
    assert by[("Base", "Helpful")].value == pytest.approx(-45.0)
    assert by[("Base", "Total")].value == pytest.approx(-15.0)  # pooled 8 docs (= mean of means: equal sizes)
    assert by[("ICDPO", "Total")].value == pytest.approx((55.0 + 15.0) / 2)
    e = by[("ICDPO", "Harmless")]
    assert e.ci_low <= e.value <= e.ci_high and e.ci_low >= 40 - 1e-9 and e.ci_high <= 70 + 1e-9
    assert math.isnan(by[("Base", "Total")].p_value)  # the reference itself
    # 8 paired docs, all better, no zero difference: of the 2^8 equally likely sign patterns only all-plus and
    # all-minus are as extreme -> exact two-sided Wilcoxon p = 2 / 2^8
    assert by[("ICDPO", "Total")].p_value == pytest.approx(2 / 2**8)
    md = (out / "leaderboard.md").read_text()
    assert "| Method | Harmless | Helpful | Total |" in md
    assert "| Base | 15.00 [" in md and "-15.00 [" in md and "vs **Base**" in md
    rows = list(csv.DictReader(open(out / "leaderboard.csv")))
    assert len(rows) == 6 and rows[0]["row"] == "Base" and rows[0]["higher_is_better"] == "True"
    assert {r["task"] for r in rows} == {"hh_harmless", "hh_helpful", "hh_harmless+hh_helpful"}
    assert rows[0]["model_args"] == "pretrained=embedded:base" and rows[0]["rm"] == "fake-rm"
    cell_dir = out / "cells" / lb.cells_of(spec)[0].key()
    assert (cell_dir / "results_hh_harmless.json").exists()
    assert (cell_dir / "samples_hh_harmless.jsonl").read_text().count("\n") == 4


UNEVEN = {("Base", "hh_harmless"): [0.1, 0.3], ("Base", "hh_helpful"): [-0.2, -0.4, -0.6, 0.0],
          ("ICDPO", "hh_harmless"): [0.2, 0.5], ("ICDPO", "hh_helpful"): [0.1, -0.1, -0.3, 0.4]}


class UnevenRunner(FakeRunner):
    """2 harmless docs, 4 helpful docs: the pooled Total differs from the mean of the two means."""

    def __call__(self, cell: lb.Cell) -> dict[str, Any]:
        rewards = UNEVEN[(cell.row, cell.task)]
        samples = [{"doc_id": i, "rm_reward": {"reward": r, "rm": "fake"}} for i, r in enumerate(rewards)]
        return {"results": {cell.task: {"rm_reward,none": 100 * sum(rewards) / len(rewards), "rm,none": "fake-rm"}},
                "higher_is_better": {cell.task: {"rm_reward": True}}, "samples": {cell.task: samples}}


def test_total_is_the_pooled_mean_over_documents(spec: lb.Spec, tmp_path: Path, no_chart: None) -> None:
    from scipy.stats import wilcoxon

    entries = lb.run_leaderboard(spec, tmp_path / "out", runner=UnevenRunner())
    by = {(e.row, e.column): e for e in entries}
    # Base: harmless 10, 30 (mean 20); helpful -20, -40, -60, 0 (mean -30)
    assert by[("Base", "Harmless")].value == pytest.approx(20.0)
    assert by[("Base", "Helpful")].value == pytest.approx(-30.0)
    total = by[("Base", "Total")]
    assert total.value == pytest.approx((10 + 30 - 20 - 40 - 60 + 0) / 6)  # -13.33, not (20 - 30) / 2 = -5
    assert total.n == 6 and total.task == "hh_harmless+hh_helpful"
    # the CI resamples the 6 pooled documents: inside their range, around the pooled mean
    assert -60 <= total.ci_low <= total.value <= total.ci_high <= 30
    # ICDPO: harmless 20, 50; helpful 10, -10, -30, 40 -> 80 / 6
    assert by[("ICDPO", "Total")].value == pytest.approx(80 / 6)
    # paired by (task, doc id): docs 0 and 1 of each task are different pairs (6 pairs, not 4)
    diffs = [20 - 10, 50 - 30, 10 + 20, -10 + 40, -30 + 60, 40 - 0]
    assert by[("ICDPO", "Total")].p_value == pytest.approx(float(wilcoxon(diffs).pvalue))
    rows = {(r["row"], r["column"]): r for r in csv.DictReader(open(tmp_path / "out" / "leaderboard.csv"))}
    assert float(rows[("Base", "Total")]["value"]) == pytest.approx(-80 / 6) and rows[("Base", "Total")]["n"] == "6"


def test_embedded_names_reach_a_foreign_model_as_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    from icdpo_eval.config import names, preflight
    from icdpo_eval.data import embedded

    monkeypatch.setattr(embedded, "base_model_path", lambda: Path("/cache/gemma"))
    assert preflight.resolve_foreign("hf", {"pretrained": "embedded:base"}) == {"pretrained": "/cache/gemma"}
    assert preflight.resolve_foreign("hf", "pretrained=embedded:gemma-3-270m,dtype=float32") == \
        "pretrained=/cache/gemma,dtype=float32"
    assert preflight.resolve_foreign("icdpo", {"pretrained": "embedded:base"}) == {"pretrained": "embedded:base"}
    assert names.canonical("embedded:smollm2-135m-instruct") == names.TEACHER
    with pytest.raises(UserError, match="unknown embedded model"):
        preflight.resolve_foreign("hf", {"pretrained": "embedded:bogus"})

def test_bad_spec(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("tasks: [hh_harmless]\nreference: Nope\nrows:\n  - {name: A, model: icdpo}\n")
    with pytest.raises(lb.SpecError, match="reference"):
        lb.load_spec(p)
    p.write_text("tasks: [t]\nrows:\n  - {name: A, model: icdpo, model_args: {x: '${undefined}'}}\n")
    with pytest.raises(lb.SpecError, match="undefined"):
        lb.load_spec(p)
    # a typo of a setting is an error naming it, never a silently ignored key (the spec's keys are declared once)
    p.write_text("tasks: [hh_harmless_mini]\nlimt: 5\nrows:\n  - {name: A, model: icdpo}\n")
    with pytest.raises(lb.SpecError, match="unknown key\\(s\\) limt; a spec has: name, tasks"):
        lb.load_spec(p)
    # an adapter's training options pass the same checks as `icdpo-eval train`'s (one declaration), at load time
    p.write_text("tasks: [hh_harmless_mini]\nadapters:\n  a: {method: dpo, rank: 0}\n"
                 "rows:\n  - {name: A, model: dpo, model_args: {adapter: 'trained:a'}}\n")
    with pytest.raises(lb.SpecError, match="adapter 'a': --rank must be >= 1"):
        lb.load_spec(p)


def test_one_cell_leaderboard(tmp_path: Path) -> None:
    """One cell through the real runner (lm-eval in this process), on the tiny twins, scored by the proxy RM."""
    p = tmp_path / "one.yaml"
    p.write_text("name: one\ntasks: [hh_harmless_mini]\nlimit: 1\nseed: 1234\n"
                 "gen_kwargs: {max_gen_toks: 8}\nmetadata: {rm: proxy}\n"
                 "rows:\n  - {name: ICL, model: icdpo, model_args: {scorer: icl, select: single, n: 1}}\n")
    entries = lb.run_leaderboard(lb.load_spec(p), tmp_path / "out")
    assert len(entries) == 1 and entries[0].n == 1
    (cell,) = (tmp_path / "out" / "cells").iterdir()
    res = json.loads((cell / "results_hh_harmless_mini.json").read_text())["results"]["hh_harmless_mini"]
    samples = [json.loads(x) for x in (cell / "samples_hh_harmless_mini.jsonl").read_text().splitlines()]
    (reward,) = check_rm_reward(res, rm_items(samples), 1)  # finite, x100, within the proxy RM's range
    assert entries[0].value == pytest.approx(100 * reward) and math.isfinite(entries[0].value)
    assert entries[0].rm == res["rm,none"] and entries[0].rm.startswith("proxy")
    assert (tmp_path / "out" / "leaderboard.png").stat().st_size > 0


class LengthRunner(FakeRunner):
    """ICDPO answers 40 tokens longer and gains reward by length alone (0.01 per token): the LC column
    takes the gain away; the lengths come from the task's per-document ``length`` metric."""

    def __call__(self, cell: lb.Cell) -> dict[str, Any]:
        import numpy as np

        rng = np.random.default_rng(0 if cell.task == "hh_harmless" else 1)
        base = rng.integers(20, 120, 40).astype(float)
        lengths = base + (40 + rng.normal(0, 20, 40) if cell.row == "ICDPO" else 0)
        rewards = 0.01 * lengths + np.random.default_rng(2).normal(0, 0.05, 40)
        samples = [{"doc_id": i, "length": float(n), "rm_reward": {"reward": float(r), "rm": "fake"}}
                   for i, (n, r) in enumerate(zip(lengths, rewards))]
        return {"results": {cell.task: {"rm_reward,none": 100 * rewards.mean(), "rm,none": "fake-rm",
                                        "length,none": lengths.mean()}},
                "higher_is_better": {cell.task: {"rm_reward": True}}, "samples": {cell.task: samples}}


def test_length_and_length_controlled_reward(spec: lb.Spec, tmp_path: Path, no_chart: None) -> None:
    entries = lb.run_leaderboard(spec, tmp_path / "out", runner=LengthRunner())
    by = {(e.row, e.column): e for e in entries}
    base, icdpo = by[("Base", "Harmless")], by[("ICDPO", "Harmless")]
    assert icdpo.length > base.length + 30
    assert icdpo.value - base.value > 30  # a raw gain, all of it length
    assert icdpo.lc_low < base.value < icdpo.lc_high  # none of it left at equal length
    assert math.isnan(base.lc) is False and base.lc == pytest.approx(base.value, abs=1e-6)  # the reference vs itself
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Mean response length" in md and "rm_reward_lc" in md
    rows = {(r["row"], r["column"]): r for r in csv.DictReader(open(tmp_path / "out" / "leaderboard.csv"))}
    assert float(rows[("ICDPO", "Harmless")]["length"]) == pytest.approx(icdpo.length, abs=1e-3)
    assert float(rows[("ICDPO", "Harmless")]["lc_value"]) == pytest.approx(icdpo.lc, abs=1e-5)
    # a rerun reuses the cells and gets the lengths back from them
    again = {(e.row, e.column): e for e in lb.run_leaderboard(spec, tmp_path / "out", runner=LengthRunner())}
    assert again[("ICDPO", "Total")].length == pytest.approx(by[("ICDPO", "Total")].length)
