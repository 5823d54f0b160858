"""The two regression gates: exactness (per-document, our own code) and statistical (users' tables)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from icdpo_eval.gates import compare as C
from icdpo_eval.gates.exact import (
    GateError,
    compare_documents,
    document_rows,
    first_difference,
    load_documents,
)
from icdpo_eval.leaderboard import load_spec

ROOT = Path(__file__).resolve().parents[1]


def _docs(rows: dict[str, list[tuple[str, float]]], task: str = "t") -> dict:
    return {(r, task, str(i)): {"row": r, "task": task, "doc_id": str(i), "response": resp, "reward": rew}
            for r, items in rows.items() for i, (resp, rew) in enumerate(items)}


BASE = _docs({"ICDPO": [("I can't help with that.", 0.25), ("Sure, here is how.", -0.5)],
              "Base": [("No.", 0.0), ("Yes.", 0.125)]})


def test_identical_documents_pass():
    code, report = compare_documents(BASE, {k: dict(v) for k, v in BASE.items()})
    assert code == 0 and "OK" in report and "4 baseline documents over 2 row(s)" in report


def test_changed_response_names_row_doc_and_first_token():
    new = {k: dict(v) for k, v in BASE.items()}
    new[("ICDPO", "t", "1")]["response"] = "Sure, here is why."
    code, report = compare_documents(new, BASE)
    assert code == 1
    assert "row 'ICDPO', task t, doc 1: response differs at token 7: new 'why.' vs baseline 'how.'" in report
    assert "in row(s) ICDPO:" in report and "Base" not in report.split("FAIL")[1]


def test_reward_tolerance_is_absolute_1e6():
    new = {k: dict(v) for k, v in BASE.items()}
    new[("Base", "t", "1")]["reward"] = 0.125 + 5e-7
    assert compare_documents(new, BASE)[0] == 0
    new[("Base", "t", "1")]["reward"] = 0.125 + 2e-6
    code, report = compare_documents(new, BASE)
    assert code == 1 and "row 'Base', task t, doc 1: reward 0.125002 vs baseline 0.125" in report


def test_missing_document_fails_and_new_rows_are_listed():
    new = {k: dict(v) for k, v in BASE.items() if k != ("Base", "t", "0")}
    new[("SFT", "t", "0")] = {"row": "SFT", "task": "t", "doc_id": "0", "response": "x", "reward": 1.0}
    code, report = compare_documents(new, BASE)
    assert code == 1 and "row 'Base', task t, doc 0: in the baseline but missing" in report
    assert "new (not in the baseline, not gated): SFT / t" in report


def test_first_difference_at_the_end():
    assert first_difference("Hello there", "Hello") == "token 1: new ' there' vs baseline <end>"


def test_document_rows_from_lm_eval_samples():
    samples = [{"doc_id": 10, "filtered_resps": ["b"], "rm_reward": {"reward": 0.5, "response": "b"}},
               {"doc_id": 2, "filtered_resps": ["a"], "rm_reward": {"reward": -1.0, "response": "a"}}]
    rows = document_rows("R", "t", samples, "rm_reward")
    assert rows == [{"row": "R", "task": "t", "doc_id": "2", "response": "a", "reward": -1.0},
                    {"row": "R", "task": "t", "doc_id": "10", "response": "b", "reward": 0.5}]


def test_load_documents_names_file_and_line(tmp_path):
    p = tmp_path / "documents.jsonl"
    p.write_text(json.dumps({"row": "A", "task": "t", "doc_id": "0", "response": "x", "reward": 0.1}) + "\n"
                 + json.dumps({"row": "A", "task": "t", "doc_id": "1", "response": "y"}) + "\n")
    with pytest.raises(GateError, match=r"documents.jsonl:2: .*KeyError: 'reward'"):
        load_documents(p)
    with pytest.raises(GateError, match="no such file"):
        load_documents(tmp_path / "nope")


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    C.add_parser(parser.add_subparsers())
    return C.main(parser.parse_args(["compare", *argv]))


def _write(path: Path, docs: dict) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs.values()))
    return path


def test_exact_cli_exit_codes(tmp_path, capsys):
    base = _write(tmp_path / "base.jsonl", BASE)
    lb = tmp_path / "lb"
    lb.mkdir()
    _write(lb / "documents.jsonl", BASE)
    assert _cli(str(lb), str(base), "--exact") == 0
    changed = {k: dict(v) for k, v in BASE.items()}
    changed[("Base", "t", "0")]["response"] = "Maybe."
    _write(lb / "documents.jsonl", changed)
    assert _cli(str(lb), str(base), "--exact") == 1
    assert "row 'Base', task t, doc 0" in capsys.readouterr().out
    assert _cli(str(lb), str(tmp_path / "missing.jsonl"), "--exact") == 2


# ------------------------------------------------------------------------------ statistical gate
def test_minimum_detectable_drop_by_hand():
    cell = C.Cell(5.0, True, 0.0, 10.0)
    assert C.minimum_detectable_drop(cell) == pytest.approx((1.959964 + 0.841621) * 5.0 / 1.959964)
    assert C.minimum_detectable_drop(C.Cell(5.0, True)) is None


def test_paired_drop_inside_the_ci_fails_only_with_the_paired_test():
    base_scores = {str(i): float(10 + (i % 3)) for i in range(12)}
    # every document about one point worse (1.00 to 1.11: distinct differences, scipy's exact null distribution;
    # equal differences, its slower permutation path, are test_paired_gate_ties_float_noise_but_fails_a_real_drop's)
    new_scores = {d: v - 1.0 - 0.01 * int(d) for d, v in base_scores.items()}
    base = {("ICDPO", "t", "rm_reward"): C.Cell(11.0, True, 2.0, 20.0)}
    new = {("ICDPO", "t", "rm_reward"): C.Cell(10.0, True, 1.0, 19.0)}
    assert C.compare(new, base, use_ci=True)[0] == 0  # inside the baseline's CI: the CI gate passes
    paired = ({("ICDPO", "t"): new_scores}, {("ICDPO", "t"): base_scores})
    code, report = C.compare(new, base, use_ci=True, paired=paired)
    assert code == 1 and "ICDPO / t / rm_reward" in report and "paired Wilcoxon p=0.000244 over 12" in report
    # one-sided p of 12 negative differences, all ranks: 1 / 2**12
    assert C.paired_drop_p(new_scores, base_scores, True)[0] == pytest.approx(1 / 2 ** 12)
    # the same documents, better: not a drop
    better = {d: v + 1.0 + 0.01 * int(d) for d, v in base_scores.items()}
    assert C.compare(new, base, use_ci=True, paired=({("ICDPO", "t"): better}, paired[1]))[0] == 0
    # lower-is-better metrics: a rise is the drop
    assert C.paired_drop_p(better, base_scores, False)[0] == pytest.approx(1 / 2 ** 12)


def test_paired_gate_ties_float_noise_but_fails_a_real_drop(tmp_path):
    """CI's failure on a green exactness gate: ten rewards each 2e-7 (raw) lower, identical answers. The
    paired test saw ten one-sided differences (p=0.001) and failed; within --atol they are ties."""
    docs = {("RM-Aug", "t", str(i)): {"row": "RM-Aug", "task": "t", "doc_id": str(i), "response": f"r{i}",
                                      "reward": 0.05 + 0.01 * i} for i in range(10)}
    noisy = {k: {**v, "reward": v["reward"] - 2e-7} for k, v in docs.items()}
    base_cells = {("RM-Aug", "t", "rm_reward"): C.Cell(9.5, True, 2.0, 17.0)}
    new_cells = {("RM-Aug", "t", "rm_reward"): C.Cell(9.5 - 2e-5, True, 2.0, 17.0)}
    p_base, p_noisy = C.paired_docs(docs), C.paired_docs(noisy)
    paired = ({("RM-Aug", "t"): p_noisy[("RM-Aug", "t")]}, {("RM-Aug", "t"): p_base[("RM-Aug", "t")]})
    assert C.compare(new_cells, base_cells, use_ci=True, paired=paired)[0] == 1  # no tie tolerance: red
    assert C.compare(new_cells, base_cells, use_ci=True, paired=paired, tie=1e-6 * C.PAIRED_SCALE)[0] == 0
    assert C.paired_drop_p(paired[0][("RM-Aug", "t")], paired[1][("RM-Aug", "t")], True, 1e-4) == (1.0, 10)
    # a real drop (0.01 raw on every document) still fails with the tie tolerance
    dropped = {k: {**v, "reward": v["reward"] - 0.01} for k, v in docs.items()}
    p_drop = C.paired_docs(dropped)[("RM-Aug", "t")]
    code, report = C.compare({("RM-Aug", "t", "rm_reward"): C.Cell(8.5, True, 1.0, 16.0)}, base_cells, use_ci=True,
                             paired=({("RM-Aug", "t"): p_drop}, paired[1]), tie=1e-4)
    assert code == 1 and "paired Wilcoxon p=0.000977 over 10" in report
    # through the CLI (its --atol is the tie), with the noisy documents as NEW's documents.jsonl
    lb = tmp_path / "lb"
    lb.mkdir()
    _write(lb / "documents.jsonl", noisy)
    _write(tmp_path / "base.jsonl", docs)
    for path, rows in ((lb / "leaderboard.csv", noisy), (tmp_path / "base.csv", docs)):
        path.write_text("row,task,metric,value,ci_low,ci_high,higher_is_better\n"
                        f"RM-Aug,t,rm_reward,{100 * sum(v['reward'] for v in rows.values()) / 10},2.0,17.0,True\n")
    args = (str(lb), str(tmp_path / "base.csv"), "--ci", "--paired", str(tmp_path / "base.jsonl"))
    assert _cli(*args) == 0
    assert _cli(*args, "--atol", "0") == 1


def test_identical_documents_give_p_one():
    s = {"0": 1.0, "1": 2.0}
    assert C.paired_drop_p(s, dict(s), True) == (1.0, 2)


def test_committed_baseline_has_the_rows_ci_gates():
    """The committed mini baseline: RM-Aug's blockwise path changes at least one answer vs RM-BoN, and it
    holds SFT and DPO rows; both baseline files describe the same rows and documents."""
    docs = load_documents(ROOT / "leaderboards" / "baseline_mini_docs.jsonl")
    by_row: dict[str, dict[str, str]] = {}
    for (row, _task, doc), d in docs.items():
        by_row.setdefault(row, {})[doc] = d["response"]
    assert {"SFT", "DPO", "RM-BoN", "RM-Aug", "ICDPO", "Base"} <= set(by_row)
    assert any(by_row["RM-Aug"][d] != by_row["RM-BoN"][d] for d in by_row["RM-BoN"])
    _, table = C.load(str(ROOT / "leaderboards" / "baseline_mini.csv"))
    assert {k[0] for k in table} == set(by_row)
    n_docs = {len(v) for v in by_row.values()}
    assert n_docs == {load_spec(ROOT / "leaderboards" / "mini.yaml").limit} and min(n_docs) >= 5  # p >= 2^-n
    for row, responses in by_row.items():
        mean = 100 * sum(docs[(row, "hh_harmless_mini", d)]["reward"] for d in responses) / len(responses)
        assert math.isclose(table[(row, "hh_harmless_mini", "rm_reward")].value, mean, abs_tol=1e-4), row


def test_exact_gate_tolerates_float32_noise_relative_to_a_term_but_not_a_planted_change():
    """Candidate scores and scorer terms are float32 sums of log-probs: their last bits move with the decode kernel a
    machine chose (seen in CI: 2.3e-5 on a term of -36.66). Within --rtol of their size they pass; 1e-3 fails."""
    base = {("R", "t", "0"): {"response": "a", "reward": 0.5, "scores": [-36.660430908203125, 2.0], "index": 1,
                              "terms": {"plus": [-36.660430908203125, 2.0]}}}
    noisy = {("R", "t", "0"): {**base[("R", "t", "0")], "scores": [-36.66045379638672, 2.0],
                               "terms": {"plus": [-36.66045379638672, 2.0]}}}
    planted = {("R", "t", "0"): {**base[("R", "t", "0")], "scores": [-36.660430908203125, 2.001]}}
    # a score that is a difference of two large terms is as noisy as they are (seen in CI: Ŝ 1.94829 -> 1.94831
    # with terms near -40)
    diff_base = {("R", "t", "0"): {"response": "a", "reward": 0.5, "scores": [1.9482940435409546], "index": 0,
                                   "terms": {"plus": [-39.28], "minus": [-41.23]}}}
    diff_new = {("R", "t", "0"): {**diff_base[("R", "t", "0")], "scores": [1.9483128786087036]}}
    assert compare_documents(diff_new, diff_base)[0] == 0
    assert compare_documents({("R", "t", "0"): {**diff_base[("R", "t", "0")], "scores": [1.9493]}}, diff_base)[0] == 1
    assert compare_documents(noisy, base)[0] == 0
    assert compare_documents(noisy, base, rtol=0.0)[0] == 1  # seen red without the relative part
    # seen on a clean clone whose kernel probe ran under load: ICDPO's sampled term moved by 2.7e-6 of its size
    small = {("R", "t", "0"): {"response": "a", "reward": 0.5, "scores": [1.0], "index": 0,
                               "terms": {"plus": [-8.77802171863732]}}}
    moved = {("R", "t", "0"): {**small[("R", "t", "0")], "terms": {"plus": [-8.778045579121681]}}}
    assert compare_documents(moved, small)[0] == 0 and compare_documents(moved, small, rtol=2e-6)[0] == 1
    code, report = compare_documents(planted, base)
    assert code == 1 and "candidate scores differ at 1 of 2" in report
