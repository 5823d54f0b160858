"""User pool files get the hub data's length filters (issue 15, item 3), ``DemoStore.filtered`` /
``DemoStore.validate``, and odd but legal text passes through unchanged.

Token counts use the embedded Gemma-3 tokenizer (no model weights are loaded).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdpo_eval.data import datasets as D
from icdpo_eval.data.hh import DataError, DataFileNotFoundError
from icdpo_eval.method.demos import DemoStore

PROMPT = "\n\nHuman: How do I bake bread?\n\nAssistant:"
LONG = "word " * 400  # > 320 tokens
MID = "word " * 150  # 150 tokens: over HH's 128 response tokens, within SyntheticGPT's 200


@pytest.fixture(autouse=True)
def _fresh_cache():
    D.clear_cache()
    yield
    D.clear_cache()


def _pool(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows() -> list[dict]:
    return [
        {"prompt": PROMPT, "chosen": "Mix flour.", "rejected": "No.", "id": "ok-1"},
        {"prompt": PROMPT + LONG, "chosen": "a", "rejected": "b", "id": "long-prompt"},
        {"prompt": PROMPT, "chosen": MID, "rejected": "b", "id": "long-chosen"},
        {"prompt": PROMPT, "chosen": "a", "rejected": MID, "id": "long-rejected"},
        {"prompt": LONG, "chosen": MID, "rejected": "b", "id": "both"},  # counted once, as prompt too long
        {"prompt": PROMPT, "chosen": "Knead.", "rejected": "Never.", "id": "ok-2"},
    ]


def test_user_pool_file_is_length_filtered_counted_and_logged_once(tmp_path, caplog):
    path = _pool(tmp_path / "pool.jsonl", _rows())
    with caplog.at_level(logging.WARNING, logger="icdpo_eval.data.datasets"):
        rows = D.demo_pool(str(path), "hh_harmless")
        assert D.demo_pool(str(path), "hh_harmless") == rows
        store = DemoStore(demo_pool=str(path))
        assert store.pool("hh_harmless_winrate") == rows
        assert store.validate(2, "hh_harmless") is store.filtered[store.key("hh_harmless")]
        assert store.validate(2) == store.filtered[store.key("hh_helpful")]  # HH limits: the same pool
    assert [r["id"] for r in rows] == ["ok-1", "ok-2"]
    stats = {"source": str(path), "rows": 6, "kept": 2, "dropped_prompt_too_long": 2,
             "dropped_response_too_long": 2, "max_prompt_tokens": 320, "max_response_tokens": 128,
             "dialogue": "verbatim", "dialogue_changed": {"prompt": 0, "chosen": 0, "rejected": 0}}
    assert D.demo_pool_stats(str(path), "hh_harmless") == stats
    assert store.filtered == {store.key("hh_harmless"): stats}
    logged = [r.getMessage() for r in caplog.records if "length filter" in r.getMessage()]
    assert logged == [f"length filter kept 2 of 6 rows of {path} (dropped 2 with a prompt over 320 tokens, "
                      "2 with a response over 128 tokens)"]


def test_limits_follow_the_task_dataset(tmp_path):
    path = _pool(tmp_path / "pool.jsonl", _rows())
    assert D.pool_limits("synthetic_gpt") == ("synthetic-gpt", (128, 200))
    assert D.pool_limits("hh_harmless_mini") == D.pool_limits("some_foreign_task") == ("hh-rlhf", (320, 128))
    store = DemoStore(demo_pool=str(path))
    synthetic = store.pool("synthetic_gpt_winrate")  # prompts <= 128, responses <= 200 tokens
    assert [r["id"] for r in synthetic] == ["ok-1", "long-chosen", "long-rejected", "ok-2"]
    assert [r["id"] for r in store.pool("hh_harmless")] == ["ok-1", "ok-2"]
    assert store.key("synthetic_gpt") != store.key("hh_harmless") == store.key("hh_helpful_rank")
    assert store.filtered[store.key("synthetic_gpt")]["max_response_tokens"] == 200


def test_validate_reads_files_now(tmp_path):
    pool = _pool(tmp_path / "pool.jsonl", _rows())
    assert DemoStore().validate(4) == {}  # task defaults are not loaded here
    store = DemoStore(demo_pool=str(pool))
    with pytest.raises(DataError, match=rf"demo_pool={re.escape(str(pool))}: 2 usable rows but k=3 .*"
                                        r"2 dropped with a prompt over 320 tokens.*lower k"):
        store.validate(3)
    bad = _pool(tmp_path / "bad.jsonl", _rows()[:1])
    with bad.open("a") as fh:
        fh.write("\n" + json.dumps({"prompt": PROMPT, "chosen": "x"}) + "\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}:3: .*'rejected'.*each line needs"):
        DemoStore(demo_pool=str(bad)).validate(1)
    with pytest.raises(DataFileNotFoundError, match="no such file"):
        DemoStore(demo_pool=str(tmp_path / "missing.jsonl")).validate(1)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="is empty"):
        DemoStore(demo_pool=str(empty)).validate(1)
    too_long = _pool(tmp_path / "long.jsonl", _rows()[1:2])
    with pytest.raises(DataError, match="is empty: 1 rows parsed, 1 dropped with a prompt over 320 tokens"):
        DemoStore(demo_pool=str(too_long)).validate(1)


def test_validate_demo_source(tmp_path):
    pool = _pool(tmp_path / "pool.jsonl", _rows())
    src = tmp_path / "borrowed.jsonl"
    src.write_text(json.dumps({"id": "ok-2", "chosen": " Teacher's answer. "}) + "\n"
                   + json.dumps({"id": "long-prompt", "chosen": "dropped by the length filter"}) + "\n")
    store = DemoStore(demo_pool=str(pool), demo_source=str(src))
    stats = store.validate(1)
    assert stats["kept"] == 2 and stats["demo_source"] == str(src) and stats["demo_source_matched"] == 1
    assert store.pool("hh_harmless") == [{**_rows()[5], "chosen": "Teacher's answer."}]
    with pytest.raises(DataError, match=r"1 usable rows but k=2 .*1 of them matched by demo_source"):
        DemoStore(demo_pool=str(pool), demo_source=str(src)).validate(2)
    with pytest.raises(DataError, match=rf"demo_source={re.escape(str(src))}: 2 rows, fewer than k=3"):
        DemoStore(demo_source=str(src)).validate(3)
    src.write_text(json.dumps({"id": "ok-2", "chosen": "x"}) + "\n\n[1, 2]\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(src))}:3: not a JSON object .*'chosen'"):
        DemoStore(demo_source=str(src)).validate(1)
    src.write_text(json.dumps({"id": "zz", "chosen": "x"}) + "\n")
    with pytest.raises(DataError, match="none of its 1 rows match the demo pool"):
        DemoStore(demo_pool=str(pool), demo_source=str(src)).validate(1)


# odd but legal text: control characters, bidi marks, emoji, line/paragraph separators, combining marks
ODD = st.text(st.characters(categories=["Cc", "Cf", "So", "Zl", "Zp", "Mn", "Ll", "Zs"],
                            exclude_characters="\ud800"), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ODD, ODD, ODD, st.booleans())
def test_odd_text_passes_through_unchanged(tmp_path, prompt, chosen, rejected, ascii_json):
    """Prompt verbatim, responses only ``.strip()``'d, through the parser and the length filter."""
    if not (prompt.strip() and chosen.strip() and rejected.strip()):
        return
    path = tmp_path / "odd.jsonl"
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    path.write_text(json.dumps(row, ensure_ascii=ascii_json) + "\n", encoding="utf-8")
    D.clear_cache()
    for rows in (D.load_pairs_file(path), D.demo_pool(str(path), "hh_harmless")):
        assert rows == [{"prompt": prompt, "chosen": chosen.strip(), "rejected": rejected.strip(),
                         "id": "odd.jsonl/0"}]
    assert D.demo_pool_stats(str(path), "hh_harmless")["kept"] == 1
