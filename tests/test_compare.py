"""``icdpo-eval compare`` exit codes on constructed leaderboard CSVs and lm-eval results JSONs."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from icdpo_eval.gates import compare as cmp
from icdpo_eval.leaderboard import CSV_FIELDS

BASE_ROWS = [
    {"row": "Base", "task": "hh_harmless_mini", "value": -10.0, "ci_low": -14.0, "ci_high": -6.0},
    {"row": "ICDPO", "task": "hh_harmless_mini", "value": 20.0, "ci_low": 15.0, "ci_high": 25.0},
]


def write_csv(path: Path, rows: list[dict[str, Any]], **overrides: Any) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            full = {"column": "Harmless (mini)", "metric": "rm_reward", "n": 3, "p_value": "",
                    "reference": "Base", "higher_is_better": True, "rm": "proxy:x", "model": "icdpo",
                    "model_args": "scorer=s", "limit": 3, "seed": 1234, "gen_kwargs": "max_gen_toks=16",
                    **r}
            full.update(overrides.get(r["row"], {}))
            w.writerow(full)
    return path


def run(new: Path, base: Path, *extra: str, capsys: pytest.CaptureFixture[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    cmp.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compare", str(new), str(base), *extra])
    return args.func(args)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "baseline.csv", BASE_ROWS)


def with_value(rows: list[dict[str, Any]], row: str, value: float) -> list[dict[str, Any]]:
    return [{**r, "value": value} if r["row"] == row else dict(r) for r in rows]


def test_identical_and_improvement_pass(tmp_path: Path, base: Path) -> None:
    assert run(base, base) == 0
    assert run(write_csv(tmp_path / "new.csv", with_value(BASE_ROWS, "ICDPO", 30.0)), base) == 0


def test_drop_within_and_over_tolerance(tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = write_csv(tmp_path / "new.csv", with_value(BASE_ROWS, "ICDPO", 19.5))
    assert run(new, base, "--tolerance", "0.5") == 0
    assert run(new, base, "--tolerance", "0.4") == 1
    assert run(new, base) == 1  # default tolerance 0
    out = capsys.readouterr().out
    assert "**WORSE**" in out and "ICDPO / hh_harmless_mini / rm_reward" in out


def test_lower_is_better_direction(tmp_path: Path) -> None:
    rows = [{"row": "M", "task": "t", "metric": "perplexity", "value": 10.0, "ci_low": 9, "ci_high": 11,
             "higher_is_better": False}]
    base = write_csv(tmp_path / "b.csv", rows)
    assert run(write_csv(tmp_path / "n.csv", with_value(rows, "M", 9.0)), base) == 0
    assert run(write_csv(tmp_path / "n2.csv", with_value(rows, "M", 10.5)), base) == 1


def test_missing_cell_fails(tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = write_csv(tmp_path / "new.csv", BASE_ROWS[:1])
    assert run(new, base, "--tolerance", "100") == 1
    assert "missing in NEW" in capsys.readouterr().out
    # a cell only in NEW is reported, not a failure
    assert run(base, new) == 0


def test_mismatched_config_exits_2(tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = write_csv(tmp_path / "new.csv", BASE_ROWS, ICDPO={"model_args": "scorer=s_hat", "limit": 5})
    assert run(new, base) == 2
    err = capsys.readouterr().err
    assert "model_args: scorer=s_hat (new) vs scorer=s (baseline)" in err and "limit" in err
    assert "seed" not in err


def test_ci_mode(tmp_path: Path, base: Path) -> None:
    inside = write_csv(tmp_path / "in.csv", with_value(BASE_ROWS, "ICDPO", 16.0))
    assert run(inside, base) == 1            # a drop of 4 with tolerance 0
    assert run(inside, base, "--ci") == 0    # but within the baseline's CI [15, 25]
    below = write_csv(tmp_path / "below.csv", with_value(BASE_ROWS, "ICDPO", 14.0))
    assert run(below, base, "--ci") == 1
    assert run(below, base, "--ci", "--tolerance", "1.5") == 0


def test_unreadable_and_mixed_inputs(tmp_path: Path, base: Path) -> None:
    assert run(tmp_path / "nope.csv", base) == 2
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert run(junk, junk) == 2
    assert run(results_json(tmp_path / "r" / "results_1.json", 1.0), base) == 2  # JSON vs CSV


def results_json(path: Path, value: float, limit: int = 2, model_args: str = "scorer=s,seed=1",
                 rm: str = "proxy:x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "results": {"hh_harmless_mini": {"alias": "x", "sample_len": 2, "rm_reward,none": value,
                                         "rm_reward_stderr,none": "N/A", "rm,none": rm,
                                         "rm_stderr,none": "N/A"}},
        "higher_is_better": {"hh_harmless_mini": {"rm_reward": True, "rm": True}},
        "n-shot": {"hh_harmless_mini": 0},
        "config": {"model": "icdpo", "model_args": model_args, "limit": limit, "random_seed": 0,
                   "numpy_seed": 1234, "torch_seed": 1234, "fewshot_seed": 1234, "gen_kwargs": None}}))
    return path


def test_results_json_files_and_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = results_json(tmp_path / "base" / "icdpo" / "results_2024.json", 5.0)
    assert run(results_json(tmp_path / "a" / "results_1.json", 6.0), base) == 0
    assert run(tmp_path / "a", tmp_path / "base") == 0  # folders, found recursively
    assert run(results_json(tmp_path / "b" / "results_1.json", 4.0), base) == 1
    assert run(results_json(tmp_path / "c" / "results_1.json", 4.0), base, "--tolerance", "1") == 0
    # the model arguments are part of the model's identity: a different one is a missing cell
    assert run(results_json(tmp_path / "d" / "results_1.json", 5.0, model_args="seed=1,scorer=s_hat"),
               base) == 1
    # argument order does not matter
    assert run(results_json(tmp_path / "e" / "results_1.json", 5.0, model_args="seed=1,scorer=s"), base) == 0
    capsys.readouterr()
    assert run(results_json(tmp_path / "f" / "results_1.json", 5.0, limit=3, rm="oasst"), base) == 2
    err = capsys.readouterr().err
    assert "limit: 3 (new) vs 2 (baseline)" in err and "rm: oasst (new) vs proxy:x (baseline)" in err


def test_leaderboard_folder_means_its_csv(tmp_path: Path, base: Path) -> None:
    (tmp_path / "lb").mkdir()
    write_csv(tmp_path / "lb" / "leaderboard.csv", BASE_ROWS)
    assert run(tmp_path / "lb", base) == 0
