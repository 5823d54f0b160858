"""Saved responses read from the files they were saved in: every row a :class:`Row` naming its file and line.

Formats (:func:`read`, detected from the path and the first row; docs/score.md):

* an lm-eval ``--output_path`` folder written with ``--log_samples`` (or one ``samples_<task>_<date>.jsonl``): each
  sample's ``doc_id``, its document's ``prompt`` and its response (``filtered_resps``); one generator per results file;
* a leaderboard folder or its ``documents.jsonl`` (``row, task, doc_id, response``): one generator per row;
* our result journal (a ``<journal dir>/<config hash>/`` folder, or one ``rank<r>.jsonl``): ``task, doc_id, response``;
* a plain JSONL, or a JSON list (AlpacaEval's ``model_outputs.json``), of ``{prompt | instruction | doc_id,
  response | output[, generator]}`` rows;
* the released ICDPO code's output JSONL (``{"prefix": [[turns]], "infer": {"t": response}, ...}`` per line, the
  ``<|prompter|>`` / ``<|assistant|>`` turns of the PRO format): the prompt is rebuilt from the turns.

Anything else, a line that is not JSON, text that is not UTF-8, a row without a response or whose response is not a
string: :class:`OutputsError` naming ``file:line``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icdpo_eval.errors import UserError

PROMPTER, ASSISTANT_TAG = "<|prompter|>", "<|assistant|>"


class OutputsError(UserError):
    """Saved outputs that cannot be read or matched (one line, naming file:line)."""


@dataclass(frozen=True)
class Row:
    """One saved response: where it was read (``file:line``), which system made it, and what names its document."""

    where: str
    generator: str
    response: str
    doc_id: int | None = None
    prompt: str | None = None
    task: str | None = None  # the task the row was generated for, when its file says


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line; bytes that are not UTF-8 or a line that is not JSON is an
    error naming the line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OutputsError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    for n, line in enumerate(raw.split(b"\n"), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OutputsError(f"{path}:{n}: not UTF-8 text (byte {exc.start + 1} of the line); save the outputs "
                               "as UTF-8") from None
        if not text.strip():
            continue
        try:
            yield n, json.loads(text)
        except json.JSONDecodeError as exc:
            raise OutputsError(f"{path}:{n}: not a JSON line ({exc.msg} at column {exc.colno})") from None


def _response(where: str, value: Any, key: str) -> str:
    if value is None:
        raise OutputsError(f"{where}: the row has no response (expected a `{key}` string)")
    if not isinstance(value, str):
        raise OutputsError(f"{where}: `{key}` must be a string, got {type(value).__name__}")
    return value


def _doc_id(where: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise OutputsError(f"{where}: doc_id must be a non-negative integer, got {value!r}")
    return int(value)


def released_prompt(where: str, prefix: Any) -> str:
    """The dialogue of a released-code record's ``prefix`` (``[[turn, ...]]``, each turn tagged ``<|prompter|>`` or
    ``<|assistant|>``, the last one the empty ``<|assistant|>`` the response follows), in the HH format that ends
    with ``\\n\\nAssistant:``."""
    turns = prefix[0] if isinstance(prefix, list) and prefix and isinstance(prefix[0], list) else None
    if not turns or not all(isinstance(t, str) for t in turns) or turns[-1] != ASSISTANT_TAG:
        raise OutputsError(f"{where}: `prefix` must be [[turn, ..., \"{ASSISTANT_TAG}\"]] (the released code's "
                           "PRO-format record)")
    out = []
    for t in turns[:-1]:
        if t.startswith(PROMPTER):
            out.append("\n\nHuman: " + t[len(PROMPTER):])
        elif t.startswith(ASSISTANT_TAG):
            out.append("\n\nAssistant: " + t[len(ASSISTANT_TAG):])
        else:
            raise OutputsError(f"{where}: a `prefix` turn starts with neither {PROMPTER} nor {ASSISTANT_TAG}")
    return "".join(out) + "\n\nAssistant:"


def _plain(where: str, d: dict[str, Any], default_generator: str) -> Row:
    key = "response" if "response" in d else "output" if "output" in d else "response"
    prompt = d.get("prompt", d.get("instruction"))
    if prompt is not None and not isinstance(prompt, str):
        raise OutputsError(f"{where}: `prompt` must be a string")
    doc_id = _doc_id(where, d.get("doc_id"))
    if prompt is None and doc_id is None:
        raise OutputsError(f"{where}: the row names no document (give `doc_id` or `prompt`)")
    return Row(where, str(d.get("generator") or default_generator), _response(where, d.get(key), key), doc_id, prompt,
               d.get("task") if isinstance(d.get("task"), str) else None)


def _row_of(path: Path, n: int, d: Any, kind: str, generator: str) -> Row:
    where = f"{path}:{n}"
    if not isinstance(d, dict):
        raise OutputsError(f"{where}: expected a JSON object per row, got {type(d).__name__}")
    if kind == "released":
        infer = d.get("infer")
        text = infer.get("t") if isinstance(infer, dict) else None
        return Row(where, generator, _response(where, text, "infer.t"), None, released_prompt(where, d.get("prefix")))
    if kind == "samples":
        resp = d.get("filtered_resps", d.get("resps"))
        while isinstance(resp, list) and resp:
            resp = resp[0]
        doc = d.get("doc") if isinstance(d.get("doc"), dict) else {}
        return Row(where, generator, _response(where, resp, "filtered_resps"), _doc_id(where, d.get("doc_id")),
                   doc.get("prompt") if isinstance(doc.get("prompt"), str) else None)
    if kind in ("documents", "journal"):
        gen = str(d.get("row")) if kind == "documents" and d.get("row") is not None else generator
        return Row(where, gen, _response(where, d.get("response"), "response"), _doc_id(where, d.get("doc_id")),
                   None, d.get("task") if isinstance(d.get("task"), str) else None)
    return _plain(where, d, generator)


def kind_of(first: Any) -> str:
    """Which format a JSONL file is, from its first row."""
    if not isinstance(first, dict):
        return "unknown"
    keys = set(first)
    if {"prefix", "infer"} <= keys:
        return "released"
    if "filtered_resps" in keys or ("resps" in keys and "doc_id" in keys):
        return "samples"
    if {"row", "task", "doc_id", "response"} <= keys:
        return "documents"
    if {"key", "task", "doc_id", "response"} <= keys:
        return "journal"
    if keys & {"response", "output"} and keys & {"prompt", "instruction", "doc_id"}:
        return "plain"
    return "unknown"


FORMATS = ("an lm-eval --log_samples folder or samples_*.jsonl, a leaderboard folder or its documents.jsonl, a "
           "journal folder or rank*.jsonl, a JSONL / JSON list of {prompt|doc_id, response[, generator]}, or the "
           "released ICDPO code's output JSONL")


def _read_file(path: Path, generator: str) -> list[Row]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise OutputsError(f"{path}: not UTF-8 text (byte {exc.start + 1}); save the outputs as UTF-8") from None
        except json.JSONDecodeError as exc:
            raise OutputsError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        if isinstance(data, dict) and "results" in data and "configs" in data:  # an lm-eval results file
            return read(path.parent)
        if not isinstance(data, list):
            raise OutputsError(f"{path}: a JSON file of outputs must hold a list of rows (AlpacaEval's format); "
                               f"this one holds a {type(data).__name__}. Formats: {FORMATS}")
        return [_plain(f"{path}:row {i + 1}", d, generator) if isinstance(d, dict) else
                _row_of(path, i + 1, d, "plain", generator) for i, d in enumerate(data)]
    lines = list(_lines(path))
    if not lines:
        raise OutputsError(f"{path}: no rows")
    kind = kind_of(lines[0][1])
    if kind == "unknown":
        raise OutputsError(f"{path}:{lines[0][0]}: not one of the formats icdpo-eval score reads ({FORMATS})")
    return [_row_of(path, n, d, kind, generator) for n, d in lines]


def _lm_eval_generator(results: Path) -> str:
    try:
        cfg = json.loads(results.read_text(encoding="utf-8")).get("config") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return results.parent.name
    args = cfg.get("model_args")
    shown = args if isinstance(args, str) else ",".join(f"{k}={v}" for k, v in (args or {}).items())
    return str(cfg.get("model", results.parent.name)) + (f" ({shown})" if shown else "")


def read(path: str | Path) -> list[Row]:
    """Every saved response under ``path`` (a file or folder of one of the formats above)."""
    p = Path(path)
    if not p.exists():
        raise OutputsError(f"{p}: no such file or folder")
    if p.is_file():
        if p.name.startswith("samples_") and p.suffix == ".jsonl":
            res = sorted(p.parent.glob("results_*.json"))
            rows = _read_file(p, _lm_eval_generator(res[-1]) if res else p.parent.name)
            task = p.name.removeprefix("samples_").rsplit("_", 1)[0]
            return [Row(r.where, r.generator, r.response, r.doc_id, r.prompt, task) for r in rows]
        return _read_file(p, p.stem)
    if (p / "documents.jsonl").is_file():  # a leaderboard folder
        return _read_file(p / "documents.jsonl", p.name)
    if (p / "config.json").is_file() and list(p.glob("rank*.jsonl")):  # one journal config
        return [r for f in sorted(p.glob("rank*.jsonl")) for r in _read_file(f, f"journal {p.name}")]
    results = sorted(p.rglob("results_*.json"))
    if results:
        rows: list[Row] = []
        for res in results:
            date = res.stem.removeprefix("results_")
            gen = _lm_eval_generator(res)
            for smp in sorted(res.parent.glob(f"samples_*_{date}.jsonl")):
                task = smp.name.removeprefix("samples_").removesuffix(f"_{date}.jsonl")
                rows += [Row(r.where, gen, r.response, r.doc_id, r.prompt, task) for r in _read_file(smp, gen)]
        if not rows:
            raise OutputsError(f"{p}: lm-eval results without samples files: rerun lm_eval with --log_samples")
        return rows
    raise OutputsError(f"{p}: a folder with none of the formats icdpo-eval score reads ({FORMATS})")
