from __future__ import annotations

import gzip
import json
import logging
import random
import sys
from pathlib import Path

import pytest

from icdpo_eval.data import datasets as D


def _hh(prompt_turns: str, chosen: str, rejected: str) -> dict[str, str]:
    return {"chosen": prompt_turns + " " + chosen, "rejected": prompt_turns + " " + rejected}


DIALOGUE = "\n\nHuman: hi there\n\nAssistant: hello!\n\nHuman: how do I bake bread?\n\nAssistant:"


def _write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    """Fail loudly if anything tries the hub."""
    import datasets

    def boom(*a, **k):
        raise AssertionError("datasets.load_dataset must not be called in these tests")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    D.clear_cache()
    yield
    D.clear_cache()


def test_split_dialogue_multi_turn():
    prompt, response = D.split_dialogue(DIALOGUE + "  Mix flour and water.\n\n ")
    assert prompt == DIALOGUE
    assert prompt.startswith("\n\nHuman: hi there") and prompt.endswith("Assistant:")
    assert response == "Mix flour and water."


def test_split_dialogue_no_assistant():
    with pytest.raises(D.DataError):
        D.split_dialogue("\n\nHuman: hello")


BAD_ROWS = [
    ({"chosen": DIALOGUE + " ok"}, "rejected"),  # missing field
    ({"chosen": "\n\nHuman: x", "rejected": "\n\nHuman: x"}, "Assistant"),  # no Assistant turn
    (_hh(DIALOGUE, "", "bad"), "empty chosen"),  # empty response
    ({"chosen": DIALOGUE + " a", "rejected": DIALOGUE.replace("bread", "cake") + " b"}, "differ"),
]


@pytest.mark.parametrize("bad,reason", BAD_ROWS)
def test_malformed_row_raises_naming_row(tmp_path, bad, reason):
    f = _write_jsonl(tmp_path / "user.jsonl", [_hh(DIALOGUE, "good", "bad"), bad])
    with pytest.raises(D.DataError, match=rf"user\.jsonl row 1: .*{reason}"):
        D.load_pairs_file(f)


def test_malformed_rows_skipped_and_counted(tmp_path, caplog):
    rows = [_hh(DIALOGUE, "good", "bad")] + [b for b, _ in BAD_ROWS] + ["not an object"]
    f = _write_jsonl(tmp_path / "user.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="icdpo_eval.data.datasets"):
        out = D.load_pairs_file(f, on_error="skip")
    assert [r["id"] for r in out] == ["user.jsonl/0"]
    assert "skipped 5 malformed rows of" in caplog.text and "row 1" in caplog.text


def test_load_pairs_file_auto_detects_formats(tmp_path):
    rows = [
        _hh(DIALOGUE, " Mix. ", "No."),
        {"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": " yes ", "rejected": "no", "id": "mine-1"},
    ]
    out = D.load_pairs_file(_write_jsonl(tmp_path / "u.jsonl.gz", rows, gz=True))
    assert out[0] == {"prompt": DIALOGUE, "chosen": "Mix.", "rejected": "No.", "id": "u.jsonl.gz/0"}
    assert out[1] == {"prompt": rows[1]["prompt"], "chosen": "yes", "rejected": "no", "id": "mine-1"}
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        D.load_pairs_file(tmp_path / "nope.jsonl")


def test_local_data_dir_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    rows = [_hh(DIALOGUE, f"answer {i}", f"bad {i}") for i in range(3)]
    _write_jsonl(tmp_path / "hh-rlhf" / "harmless-base" / "test.jsonl.gz", rows, gz=True)
    _write_jsonl(tmp_path / "hh-rlhf" / "helpful-base" / "train.jsonl", rows[:2])
    out = D.load_pairs("hh-rlhf", "harmless-base", "test", apply_length_filter=False)
    assert [r["chosen"] for r in out] == ["answer 0", "answer 1", "answer 2"]
    assert [r["id"] for r in out] == [f"harmless-base/test/{i}" for i in range(3)]
    assert len(D.load_pairs("hh-rlhf", "helpful-base", "train", apply_length_filter=False)) == 2
    pool = D.demo_pool("hh-rlhf:harmless-base:test", "anything")
    assert len(pool) == 3


def test_missing_local_file_names_path_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    expected = tmp_path / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
    with pytest.raises(FileNotFoundError) as e:
        D.load_pairs("hh-rlhf", "helpful-base", "test")
    assert str(expected) in str(e.value) and D.DATA_ENV in str(e.value)
    with pytest.raises(FileNotFoundError, match="synthetic-gpt"):
        D.load_pairs("synthetic-gpt", None, "test")


def test_synthetic_split_deterministic_disjoint_order_free(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    rows = [{"prompt": f"Write about topic {i}.", "chosen": f"Sure {i}", "rejected": "x"} for i in range(400)]
    f = tmp_path / "synthetic-gpt" / "train.jsonl"

    def splits() -> dict[str, set[str]]:
        return {
            s: {r["prompt"] for r in D.load_pairs("synthetic-gpt", None, s, apply_length_filter=False)}
            for s in D.SYNTHETIC_SPLITS
        }

    _write_jsonl(f, rows)
    first = splits()
    random.Random(0).shuffle(rows)
    _write_jsonl(f, rows)
    assert splits() == first
    train, dev, test = first["train"], first["dev"], first["test"]
    assert not (train & dev or train & test or dev & test)
    assert len(train | dev | test) == 400
    assert 320 < len(train) < 390 and dev and test
    p = next(iter(test))
    assert p.startswith("\n\nHuman: Write about topic") and p.endswith("\n\nAssistant:")


def test_length_filter_drops_long_rows(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    rows = [_hh(DIALOGUE, "short", "short too"), _hh(DIALOGUE, "word " * 300, "short")]
    _write_jsonl(tmp_path / "hh-rlhf" / "harmless-base" / "train.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="icdpo_eval.data.datasets"):
        out = D.load_pairs("hh-rlhf", "harmless-base", "train")
    assert [r["chosen"] for r in out] == ["short"]
    assert "length filter kept 1 of 2 rows" in caplog.text


def test_mini_eval_and_pool():
    ev = D.load_pairs("hh-rlhf-mini", None, "eval")
    pool = D.load_pairs("hh-rlhf-mini", None, "pool")
    assert len(ev) == 100 and len(pool) == 1000
    assert not {r["id"] for r in ev} & {r["id"] for r in pool}
    assert all(r["id"].startswith("harmless-base/test/") for r in ev + pool)
    assert all(r["prompt"].startswith("\n\nHuman:") and r["prompt"].endswith("\n\nAssistant:") for r in ev)
    assert D.demo_pool(None, "hh_harmless_mini") == pool
    assert len(D.mini_ids()) == 1100


def test_demo_pool_unknown_task():
    with pytest.raises(D.DataError, match="demo_pool="):
        D.demo_pool(None, "some_other_task")
    with pytest.raises(D.DataError, match="unknown dataset"):
        D.demo_pool("nosuch:train", "x")


def test_mini_data_regenerates_identically(tmp_path, shared_hh_test, monkeypatch):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_mini_data.py"
    spec = importlib.util.spec_from_file_location("make_mini_data", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(sys, "argv", [str(script), str(shared_hh_test.parents[1]), "--out", str(tmp_path)])
    mod.main()  # the script as `python scripts/make_mini_data.py SRC --out DIR` runs it, in this process
    for name in ("eval.jsonl", "pool.jsonl"):
        assert (tmp_path / name).read_bytes() == (D.MINI_DIR / name).read_bytes()


def test_heldout_excludes_mini(monkeypatch, shared_hh_test):
    monkeypatch.setenv(D.DATA_ENV, str(shared_hh_test.parents[2]))
    held = D.heldout_pairs(apply_length_filter=False)
    assert len(held) == 2303 - 1100  # 9 malformed rows of the 2312 are skipped
    assert not {r["id"] for r in held} & D.mini_ids()
