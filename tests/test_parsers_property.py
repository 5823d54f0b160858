"""Property tests of every row/file parser (issue 15, item 4): arbitrary JSON values and byte strings in,
a valid row or the project's own data error out, nothing else.

Parsers: HH transcripts (``split_dialogue``, ``hh_to_turns``, ``parse_hh_row``), pair files (``load_pairs_file``,
``_parse`` over ``read_jsonl``), rank sets (``tasks/rank.py``), borrowed-demo files (``apply_borrowed``), results
JSON / leaderboard CSVs (``compare.load``), ``documents.jsonl`` (``exact_gate.load_documents``) and leaderboard
specs (``leaderboard.load_spec``). Files are written to a temporary folder, as ``.jsonl`` and as ``.jsonl.gz``
(whole, truncated or garbage gzip streams). No model is loaded; each test runs a modest number of examples.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from icdpo_eval import leaderboard as lb
from icdpo_eval.data import datasets as D
from icdpo_eval.data.hh import ASSISTANT, HUMAN, DataError, hh_to_turns, split_dialogue
from icdpo_eval.gates import compare
from icdpo_eval.gates import exact as exact_gate
from icdpo_eval.method.demos import apply_borrowed
from icdpo_eval.tasks import rank

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

# ------------------------------------------------------------------------------------------ strategies
FRAGMENTS = [HUMAN, ASSISTANT, "Human:", "Assistant:", "\n\n", "\n", " ", "\t", "hi", "x y", "\u202e", "\u200f",
             "\U0001f600", "\x00", "\x1b", "\u2028", "\x85", "\r", "\ufeff", "\ud800", "\\n", '"', "{", "é"]
scalars = st.none() | st.booleans() | st.integers() | st.just(10**400) | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                        max_size=4), max_leaves=12)
texty = st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join) | st.text(max_size=20)
field = texty | json_values
# non-blank text, odd characters included (no HH markers, no lone surrogates), so that many rows are valid
good_text = (st.text(min_size=1, max_size=12) | st.lists(st.sampled_from(FRAGMENTS[4:-6]), min_size=1, max_size=4)
             .map("".join)).map(lambda t: t if t.strip() else t + "ok")


def _transcript(prompt: str, response: str) -> str:
    return prompt + ASSISTANT + response


hh_rows = st.one_of(
    st.builds(lambda p, a, b: {"chosen": _transcript(p, a), "rejected": _transcript(p, b)}, texty, texty, texty),
    st.fixed_dictionaries({}, optional={"chosen": field | st.builds(_transcript, texty, texty),
                                        "rejected": field | st.builds(_transcript, texty, texty), "id": field}),
)
pair_rows = st.fixed_dictionaries({}, optional={"prompt": field, "chosen": field, "rejected": field, "id": field})
good_rows = (st.fixed_dictionaries({"prompt": good_text, "chosen": good_text, "rejected": good_text},
                                    optional={"id": field})
             | st.builds(lambda p, a, b: {"chosen": _transcript(p, a), "rejected": _transcript(p, b)},
                         texty, good_text, good_text))
preference_rows = good_rows | good_rows | hh_rows | pair_rows | json_values


@st.composite
def jsonl_bytes(draw: Any, rows: st.SearchStrategy) -> bytes:
    """JSONL-ish content: JSON lines of ``rows`` (ASCII or raw UTF-8, lone surrogates as invalid bytes), blank
    lines, garbage lines, CRLF endings; sometimes a byte-order mark, sometimes cut short."""
    lines = []
    clean = draw(st.integers(0, 2)) == 0  # a third of the files: rows only, not cut
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 5 if clean else 9))
        if kind < 7:
            text = json.dumps(draw(rows), ensure_ascii=draw(st.booleans()))
            lines.append(text.encode("utf-8", "surrogatepass") + (b"\r" if kind == 6 else b""))
        elif kind == 7:
            lines.append(draw(st.sampled_from([b"", b"  ", b"\t\r"])))
        else:
            lines.append(draw(st.binary(max_size=24)))
    out = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + b"\n".join(lines)
    if not clean and draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return out


def file_bytes(rows: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(jsonl_bytes(rows), jsonl_bytes(rows), st.binary(max_size=200))


@st.composite
def maybe_gzip(draw: Any, content: st.SearchStrategy) -> tuple[str, bytes]:
    """(suffix, bytes): plain ``.jsonl``, or ``.jsonl.gz`` whole, truncated, or not gzip at all."""
    data = draw(content)
    how = draw(st.sampled_from(["plain", "plain", "plain", "gz", "gz", "gz-truncated", "gz-garbage"]))
    if how == "plain":
        return ".jsonl", data
    if how == "gz-garbage":
        return ".jsonl.gz", data
    gz = gzip.compress(data)
    if how == "gz-truncated":
        gz = gz[: draw(st.integers(0, len(gz) - 1))]
    return ".jsonl.gz", gz


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop")


def _write(folder: Path, name: str, data: bytes) -> Path:
    for old in folder.iterdir():
        old.unlink()
    path = folder / name
    path.write_bytes(data)
    return path


def _encodable(s: Any) -> bool:
    if not isinstance(s, str):
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _names_file(err: Exception, path: Path, n_lines: int) -> None:
    """The error starts with the file, then a line number within the file when it gives one."""
    msg = str(err)
    assert msg.startswith(str(path)), msg
    m = re.match(r":(\d+): ", msg[len(str(path)):])
    if m:
        assert 1 <= int(m.group(1)) <= n_lines, msg


def _check_pair_row(r: Any) -> None:
    assert isinstance(r, dict) and set(r) == {"prompt", "chosen", "rejected", "id"}
    assert all(_encodable(r[k]) for k in r)
    assert r["prompt"].strip() and r["chosen"] and r["rejected"]
    assert r["chosen"] == r["chosen"].strip() and r["rejected"] == r["rejected"].strip()


# ------------------------------------------------------------------------------------------ HH transcripts
@SETTINGS
@given(texty | json_values)
def test_split_dialogue(x):
    try:
        prompt, response = split_dialogue(x)
    except DataError:
        return
    assert isinstance(x, str) and prompt + x[len(prompt):] == x
    assert prompt.endswith(ASSISTANT) and response == response.strip() and response in x


@SETTINGS
@given(texty | json_values)
def test_hh_to_turns(x):
    try:
        turns = hh_to_turns(x)
    except DataError:
        return
    assert turns and turns[0][0] == "user"
    assert all(role in ("user", "assistant") and _encodable(t) and t == t.strip() for role, t in turns)


@SETTINGS
@given(preference_rows)
def test_parse_hh_and_pair_row(row):
    for parse in (D.parse_hh_row, D.parse_pair_row):
        try:
            out = parse(row)
        except DataError:
            continue
        assert isinstance(out, tuple) and len(out) == 3 and all(_encodable(t) for t in out)


# ------------------------------------------------------------------------------------------ pair files
@SETTINGS
@given(maybe_gzip(file_bytes(preference_rows)), st.sampled_from(["raise", "skip"]))
@example((".jsonl.gz", gzip.compress(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n')[:-9]), "raise")
@example((".jsonl", b'{"prompt": "p\xe2\x80\xa8q", "chosen": "a", "rejected": "b"}\n'), "raise")
def test_load_pairs_file(tmp, file, on_error):
    suffix, data = file
    path = _write(tmp, "pool" + suffix, data)
    try:
        rows = D.load_pairs_file(path, on_error=on_error)
    except DataError as e:
        event("DataError")
        _names_file(e, path, data.count(b"\n") + 1 if suffix == ".jsonl" else 10**9)
        return
    event("rows" if rows else "no rows")
    for r in rows:
        _check_pair_row(r)


@SETTINGS
@given(maybe_gzip(file_bytes(preference_rows)), st.sampled_from(["hh", "pair", "synthetic", "auto"]),
       st.sampled_from(["raise", "skip"]))
def test_parse_over_read_jsonl(tmp, file, kind, on_error):
    suffix, data = file
    path = _write(tmp, "rows" + suffix, data)
    for read in (lambda: D._parse(D.read_jsonl(path), str(path), kind, "x", on_error),
                 lambda: D._parse_numbered(D.iter_jsonl(path), str(path), kind, "x", on_error)):
        try:
            rows = read()
        except DataError as e:
            assert str(e).startswith(str(path)), str(e)
            continue
        for r in rows:
            _check_pair_row(r)
            if kind == "synthetic":
                assert r["prompt"].startswith(HUMAN) and r["prompt"].endswith(ASSISTANT)


def test_errors_name_file_and_line_blank_lines_counted(tmp):
    good = json.dumps({"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": "a", "rejected": "b"})
    path = _write(tmp, "pool.jsonl", f"\n{good}\n\n{good}\n\n\n{json.dumps({'prompt': 'q', 'chosen': 'a'})}\n".encode())
    with pytest.raises(DataError) as e:
        D.load_pairs_file(path)
    assert str(e.value).startswith(f"{path}:7: ")
    assert "missing or non-string field 'rejected'" in str(e.value) and "each line needs" in str(e.value)
    path = _write(tmp, "pool.jsonl", f"{good}\n{{not json\n".encode())
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: .*invalid JSON"):
        D.load_pairs_file(path)
    path = _write(tmp, "pool.jsonl", f"{good}\n".encode() + b'{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: .*not UTF-8"):
        D.load_pairs_file(path)


def test_truncated_gzip_under_data_dir_names_the_file(tmp_path, monkeypatch):
    row = {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}
    path = tmp_path / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress((json.dumps(row) + "\n").encode() * 50)[:-20])
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: corrupt or truncated gzip archive"):
        D.load_pairs("hh-rlhf", "harmless-base", "test", apply_length_filter=False)


# ------------------------------------------------------------------------------------------ rank sets
@st.composite
def good_rank_rows(draw: Any) -> dict[str, Any]:
    cands = draw(st.lists(good_text, min_size=2, max_size=4))
    best = draw(st.integers(0, len(cands) - 1))
    row: dict[str, Any] = {"prompt": draw(good_text), "candidates": cands, "judge_best": best}
    extra = draw(st.sampled_from(["", "set", "tied", "failed", "id"]))
    if extra == "set":
        row["judge_best_set"] = sorted({best, draw(st.integers(0, len(cands) - 1))})
    elif extra == "tied":
        row["best_tied"] = True
    elif extra == "failed":
        row.update(judge_best=None, judge_order=None, judge_best_set=[])
    elif extra == "id":
        row.update(id=draw(st.integers(0, 9) | good_text), source_task=draw(st.sampled_from(["hh_helpful", ""])))
    return row


rank_rows = good_rank_rows() | good_rank_rows() | json_values | st.fixed_dictionaries({}, optional={
    "prompt": field, "candidates": st.lists(texty, max_size=4) | json_values,
    "judge_best": st.none() | st.integers(-1, 4) | st.floats(-1, 4) | json_values,
    "judge_best_set": st.lists(st.integers(-1, 4) | json_values, max_size=3) | json_values,
    "judge_order": st.none() | st.lists(st.integers(0, 3)), "best_tied": json_values, "id": field,
    "source_task": st.none() | texty | json_values})


def _load_or_error(load: Any, path: Any, error: type[Exception]) -> Any:
    """``load(path)``, or None when it raised ``error`` naming the file: the only failure a loader may have."""
    try:
        return load(path)
    except error as e:
        assert str(e).startswith(str(path)), str(e)
        return None


@SETTINGS
@given(maybe_gzip(file_bytes(rank_rows)))
def test_rank_set_loader(tmp, file):
    suffix, data = file
    path = _write(tmp, "rank" + suffix, data)
    rows = _load_or_error(rank.load_rank_rows, path, DataError)
    event("rows" if rows is not None else "DataError")
    if rows is None:
        return
    for r in rows:
        assert _encodable(r["id"]) and _encodable(r["prompt"]) and r["prompt"] and _encodable(r["source_task"])
        assert len(r["candidates"]) >= 2 and all(_encodable(c) for c in r["candidates"])
        assert r["judge_status"] in (rank.OK, rank.TIED, rank.FAILED)
        assert all(type(i) is int and 0 <= i < len(r["candidates"]) for i in [r["judge_best"], *r["judge_best_set"]])


@settings(SETTINGS, max_examples=25)
@given(jsonl_bytes(rank_rows))
def test_rank_set_dataset(tmp, monkeypatch_module, data):
    """The lm-eval loader builds a ``datasets.Dataset`` from every row set the parser accepts."""
    path = _write(tmp, "rank.jsonl", data)
    try:
        ds = rank.rank_set(rank_set=str(path))
    except DataError:
        return
    assert len(ds["test"]) == len(rank.load_rank_rows(path))


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


# ------------------------------------------------------------------------------------------ borrowed demos
POOL = [{"prompt": p, "chosen": "c", "rejected": "r", "id": i}
        for i, p in [("a", "hi"), ("0", ASSISTANT), ("b", "x y"), ("1", "\u202e")]]
borrowed_rows = st.fixed_dictionaries({"id": st.sampled_from(["a", "b", "1"]), "chosen": good_text}) | json_values | \
    st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["a", "b", "zz"]) | st.integers(-1, 2) | json_values,
    "prompt": st.sampled_from([p["prompt"] for p in POOL]) | field, "chosen": field})


@SETTINGS
@given(maybe_gzip(file_bytes(borrowed_rows)))
def test_apply_borrowed(tmp, file):
    suffix, data = file
    path = _write(tmp, "borrowed" + suffix, data)
    try:
        out = apply_borrowed(POOL, str(path))
    except DataError as e:
        assert str(path) in str(e), str(e)
        return
    assert out and len(out) <= len(POOL)
    for r in out:
        orig = next(p for p in POOL if p["id"] == r["id"])
        assert {**r, "chosen": orig["chosen"]} == orig
        assert _encodable(r["chosen"]) and r["chosen"] == r["chosen"].strip() and r["chosen"]


# ------------------------------------------------------------------------------------------ compare / gates
metric_names = st.sampled_from(["acc,none", "acc_stderr,none", "rm_reward,none", "rm,none", "mrr,flt", "alias"])
good_results = st.fixed_dictionaries({"results": st.dictionaries(st.sampled_from(["t1", "t2"]), st.dictionaries(
    metric_names, st.floats() | st.integers() | st.text(max_size=4), max_size=4), max_size=2)}, optional={
    "config": st.fixed_dictionaries({"model": st.text(max_size=4), "model_args": st.text(max_size=8) | json_values}),
    "higher_is_better": st.dictionaries(st.sampled_from(["t1", "t2"]), st.dictionaries(st.sampled_from(
        ["acc", "mrr"]), st.booleans()))})
results_docs = good_results | good_results | json_values | st.fixed_dictionaries({}, optional={
    "results": json_values | st.dictionaries(st.text(max_size=6), json_values | st.dictionaries(
        metric_names | st.text(max_size=6), json_values, max_size=4), max_size=3),
    "config": json_values | st.fixed_dictionaries({}, optional={"model": json_values, "model_args": json_values,
                                                                "limit": json_values}),
    "n-shot": json_values, "higher_is_better": json_values | st.dictionaries(st.text(max_size=6), json_values)})


def _check_table(fmt: str, table: dict) -> None:
    assert fmt in ("json", "csv")
    for key, cell in table.items():
        assert isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)
        assert isinstance(cell, compare.Cell) and isinstance(cell.value, float)
        assert isinstance(cell.higher_is_better, bool)
        assert all(x is None or isinstance(x, float) for x in (cell.ci_low, cell.ci_high))
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in cell.config.items())


@SETTINGS
@given(st.builds(lambda d: json.dumps(d).encode(), results_docs) | st.binary(max_size=200))
@example(b'{"results": {"t": {"acc,none": 1e999999}}, "config": []}')
def test_compare_loads_results_json(tmp, data):
    path = _write(tmp, "results_x.json", data)
    loaded = _load_or_error(compare.load, str(path), compare.CompareError)
    if loaded is not None:
        _check_table(*loaded)


CSV_COLUMNS = ["row", "column", "task", "metric", "value", "ci_low", "ci_high", "higher_is_better", "model", "seed"]


@st.composite
def csv_bytes(draw: Any) -> bytes:
    header = draw(st.lists(st.sampled_from(CSV_COLUMNS) | st.text(max_size=5), max_size=7))
    cells = st.sampled_from(["", "1.5", "nan", "-inf", "1e400", "true", "x"]) | texty
    rows = draw(st.lists(st.lists(cells, max_size=len(header) + 2), max_size=5))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    out = buf.getvalue().encode("utf-8", "surrogatepass")
    return out[: draw(st.integers(0, len(out)))] if draw(st.booleans()) else out


@SETTINGS
@given(csv_bytes() | st.binary(max_size=200))
@example(b"row,value,task\nA\n")
def test_compare_loads_csv(tmp, data):
    path = _write(tmp, "leaderboard.csv", data)
    loaded = _load_or_error(compare.load, str(path), compare.CompareError)
    if loaded is not None:
        _check_table(*loaded)


good_documents = st.fixed_dictionaries({
    "row": st.sampled_from(["A", "B"]), "task": st.sampled_from(["t"]), "doc_id": st.integers(0, 3) | good_text,
    "response": good_text | st.just(""), "reward": st.none() | st.floats()})
document_rows = good_documents | good_documents | json_values | st.fixed_dictionaries({}, optional={
    "row": field, "task": field, "doc_id": st.integers(0, 3) | field, "response": field,
    "reward": st.none() | st.floats() | st.integers() | st.just(10**400) | json_values})


@SETTINGS
@given(jsonl_bytes(document_rows) | st.binary(max_size=200))
def test_gate_loads_documents(tmp, data):
    path = _write(tmp, "documents.jsonl", data)
    docs = _load_or_error(exact_gate.load_documents, path, exact_gate.GateError)
    if docs is None:
        return
    assert docs
    for key, d in docs.items():
        assert isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)
        assert _encodable(d["response"]) and (d["reward"] is None or isinstance(d["reward"], float))
    exact_gate.compare_documents(docs, docs)  # a parsed file compares with itself without error


# ------------------------------------------------------------------------------------------ leaderboard specs
spec_rows = st.lists(json_values | st.fixed_dictionaries({}, optional={
    "name": field, "model": field, "model_args": field}), max_size=3)
good_specs = st.fixed_dictionaries({"tasks": st.lists(st.sampled_from(["hh_harmless", "t2"]), min_size=1) | st.just(
    "hh_harmless,hh_helpful"), "rows": st.lists(st.fixed_dictionaries({"name": good_text, "model": st.sampled_from(
        ["icdpo", "hf"])}, optional={"model_args": st.just("k=2,seed=1") | st.just({"k": 2})}), min_size=1,
    max_size=3)}, optional={"seed": st.integers(0, 9), "limit": st.integers(1, 9), "vars": st.just({"x": 1})})
specs = good_specs | good_specs | json_values | st.fixed_dictionaries({}, optional={
    "tasks": field | st.lists(texty, max_size=2), "rows": spec_rows, "vars": json_values,
    "model_defaults": json_values, "seed": json_values, "limit": json_values, "batch_size": json_values,
    "env": json_values, "gen_kwargs": field, "reference": field, "columns": json_values})


def _yaml(x: Any) -> bytes:
    import yaml

    return yaml.safe_dump(x, allow_unicode=True).encode("utf-8", "surrogatepass")


@SETTINGS
@given(st.builds(_yaml, specs) | st.binary(max_size=200))
@example(b"rows: [\n")
def test_leaderboard_spec(tmp, data):
    path = _write(tmp, "spec.yaml", data)
    try:
        spec = lb.load_spec(path)
    except lb.SpecError as e:
        assert str(path) in str(e), str(e)
        return
    assert isinstance(spec, lb.Spec) and spec.rows and spec.tasks
    assert all(isinstance(r, lb.Row) and isinstance(r.name, str) and isinstance(r.model, str) for r in spec.rows)
    assert all(isinstance(t, str) for t in spec.tasks)


# ------------------------------------------------------------------------------------------ valid input parses
# The properties above accept a parser that rejects everything; these do not: well-formed input must parse, and
# what comes out must be what went in. Plain words (letters, digits, inner spaces) so that no input is ambiguous.
words = st.text(st.sampled_from("abcXYZ019 "), min_size=1, max_size=12).map(str.strip).filter(bool)


@SETTINGS
@given(st.lists(st.tuples(words, words), min_size=1, max_size=3), words)
def test_valid_dialogue_splits_and_reads(turns, last):
    text = "".join(HUMAN + h + ASSISTANT + a for h, a in turns) + HUMAN + last + ASSISTANT + " " + turns[0][1]
    prompt, response = split_dialogue(text)
    assert prompt + " " + response == text and response == turns[0][1]
    roles = [r for r, _ in hh_to_turns(prompt)]
    assert roles == ["user", "assistant"] * len(turns) + ["user"]


valid_pairs = st.lists(st.builds(lambda p, c, r: {"prompt": HUMAN + p + ASSISTANT, "chosen": c, "rejected": r},
                                 words, words, words), min_size=1, max_size=5)


@SETTINGS
@given(valid_pairs, st.booleans())
def test_valid_pair_file_parses_every_row(tmp, rows, gz):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path = _write(tmp, "pool.jsonl.gz" if gz else "pool.jsonl", gzip.compress(data) if gz else data)
    out = D.load_pairs_file(path)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in out] == \
        [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    hh = [{"chosen": r["prompt"] + " " + r["chosen"], "rejected": r["prompt"] + " " + r["rejected"]} for r in rows]
    assert [D.parse_hh_row(r) for r in hh] == [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]


@SETTINGS
@given(st.lists(good_rank_rows(), min_size=1, max_size=4))
def test_valid_rank_set_parses_every_row(tmp, rows):
    rows = [{**r, "prompt": "p" + str(i)} for i, r in enumerate(rows)]  # printable, distinct prompts
    path = _write(tmp, "rank.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8", "surrogatepass"))
    out = rank.load_rank_rows(path)
    assert [r["prompt"] for r in out] == [r["prompt"] for r in rows]
    for got, want in zip(out, rows, strict=True):
        if want["judge_best"] is None:  # the judge failed on this row: kept, marked so
            assert got["judge_status"] == rank.FAILED
        else:
            assert got["judge_best"] == want["judge_best"] and got["candidates"] == want["candidates"]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "1"]), words), min_size=1, max_size=3, unique_by=lambda t: t[0]))
def test_valid_borrowed_demos_replace_chosen(tmp, borrowed):
    path = _write(tmp, "borrowed.jsonl", "".join(json.dumps({"id": i, "chosen": c}) + "\n"
                                                 for i, c in borrowed).encode())
    out = {r["id"]: r["chosen"] for r in apply_borrowed(POOL, str(path))}
    assert out == dict(borrowed)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["t1", "t2"]), st.floats(-1e6, 1e6), min_size=1))
def test_valid_results_json_loads_every_metric(tmp, values):
    doc = {"results": {t: {"acc,none": v} for t, v in values.items()}, "config": {"model": "m", "model_args": ""}}
    path = _write(tmp, "results_x.json", json.dumps(doc).encode())
    fmt, table = compare.load(str(path))
    assert fmt == "json" and {k[1]: c.value for k, c in table.items()} == pytest.approx(values)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 50), words, st.floats(-1, 1)), min_size=1, max_size=5,
                unique_by=lambda t: t[0]))
def test_valid_documents_load_every_line(tmp, docs):
    lines = [{"row": "A", "task": "t", "doc_id": str(i), "response": r, "reward": w, "scores": [w, 0.5], "index": 0,
              "terms": {"positive": [w, 1.0]}} for i, r, w in docs]
    path = _write(tmp, "documents.jsonl", "".join(json.dumps(d) + "\n" for d in lines).encode())
    out = exact_gate.load_documents(path)
    assert {k[2]: (d["response"], d["reward"], d["scores"]) for k, d in out.items()} == \
        {str(i): (r, w, [w, 0.5]) for i, r, w in docs}


@SETTINGS
@given(good_specs)
def test_valid_spec_loads_every_row(tmp, raw):
    names = [f"row {i}" for i in range(len(raw["rows"]))]  # distinct names
    raw = {**raw, "rows": [{**r, "name": n} for r, n in zip(raw["rows"], names)]}
    spec = lb.load_spec(_write(tmp, "spec.yaml", _yaml(raw)))
    assert [r.name for r in spec.rows] == names and [r.model for r in spec.rows] == [r["model"] for r in raw["rows"]]
