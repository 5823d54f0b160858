"""The exactness gate: per-document responses and rewards of a leaderboard vs a committed baseline.

The embedded pipeline is deterministic under a seed (every document's samples depend only on the
seed and the document), so a change to our code that alters *any* method's output shows up as a
different response or reward on some document, long before it moves a mean past a confidence
interval. ``icdpo-eval leaderboard`` writes ``DIR/documents.jsonl``, one line per (row, task, document)::

    {"row": "ICDPO", "task": "hh_harmless_mini", "doc_id": "3", "response": "...", "reward": 0.1234}

and ``icdpo-eval compare DIR BASELINE_DOCS.jsonl --exact`` compares it with the committed file:
responses byte for byte, rewards to ``--atol`` (default 1e-6). It exits 1 naming the row, task,
document and the first differing token (or the reward values); a baseline row or document missing from
the new run fails too; rows only in the new run are listed as new. A deliberate change regenerates
the baseline (``docs/leaderboard.md``), and the diff of the JSONL shows the reviewer what moved.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from icdpo_eval.errors import UserError

DOCUMENTS = "documents.jsonl"
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
DocKey = tuple[str, str, str]  # (row, task, doc_id)


class GateError(UserError):
    """Unreadable gate input (exit 2)."""


def document_rows(row: str, task: str, samples: Iterable[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """``documents.jsonl`` lines of one leaderboard cell from lm-eval's logged samples."""
    out = []
    for s in samples:
        resp = s.get("filtered_resps", s.get("resps"))
        while isinstance(resp, list) and resp:
            resp = resp[0]
        v = s.get(metric)
        reward = v.get("reward") if isinstance(v, dict) else v
        out.append({"row": row, "task": task, "doc_id": str(s["doc_id"]),
                    "response": resp if isinstance(resp, str) else json.dumps(resp),
                    "reward": None if reward is None else float(reward)})
    return sorted(out, key=lambda d: (int(d["doc_id"]) if d["doc_id"].isdigit() else 0, d["doc_id"]))


def load_documents(path: str | Path) -> dict[DocKey, dict[str, Any]]:
    """A ``documents.jsonl`` file, or a leaderboard folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / DOCUMENTS
    if not p.is_file():
        raise GateError(f"{p}: no such file (run `icdpo-eval leaderboard SPEC --out DIR`, which writes "
                        f"DIR/{DOCUMENTS})")
    out: dict[DocKey, dict[str, Any]] = {}
    try:
        lines = p.read_bytes().split(b"\n")  # "\n" only: a U+2028 inside a response stays in its line
    except OSError as exc:
        raise GateError(f"{p}: cannot read ({exc.__class__.__name__}: {exc})") from None
    for line_no, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
            if not line.strip(" \t\r\n"):
                continue
            d = json.loads(line)
            key = (_key_part(d["row"], "row"), _key_part(d["task"], "task"), _key_part(d["doc_id"], "doc_id"))
            if not isinstance(d["response"], str):
                raise TypeError(f"'response' must be a string, not {type(d['response']).__name__}")
            d["response"].encode("utf-8")
            reward = d["reward"]
            if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))):
                raise TypeError(f"'reward' must be a number or null, not {type(reward).__name__}")
            d["reward"] = None if reward is None else float(reward)
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:  # ValueError: UTF-8, JSON
            raise GateError(f"{p}:{line_no}: not a documents line with row/task/doc_id/response/reward "
                            f"({exc.__class__.__name__}: {str(exc)[:200]}); lines are written by "
                            "`icdpo-eval leaderboard` (DIR/documents.jsonl)") from None
        out[key] = d
    if not out:
        raise GateError(f"{p}: no documents")
    return out


def _key_part(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"{name!r} must be a string or an integer, not {type(value).__name__}")
    return str(value)


def first_difference(new: str, base: str) -> str:
    """Where two responses first differ, as ``token i: 'new…' vs 'base…'``."""
    a, b = _TOKEN.findall(new), _TOKEN.findall(base)
    i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    show = lambda toks: repr("".join(toks[i:i + 6])[:60]) if i < len(toks) else "<end>"  # noqa: E731
    return f"token {i}: new {show(a)} vs baseline {show(b)}"


def compare_documents(new: dict[DocKey, dict[str, Any]], base: dict[DocKey, dict[str, Any]],
                      atol: float = 1e-6) -> tuple[int, str]:
    """-> (exit code 0/1, report)."""
    failures: list[str] = []
    failed_rows: set[str] = set()
    for key in sorted(base):
        row, task, doc = key
        where = f"row {row!r}, task {task}, doc {doc}"
        before = len(failures)
        if key not in new:
            failures.append(f"{where}: in the baseline but missing from the new run")
            failed_rows.add(row)
            continue
        n, b = new[key], base[key]
        if n["response"] != b["response"]:
            failures.append(f"{where}: response differs at {first_difference(n['response'], b['response'])}")
        rn, rb = n["reward"], b["reward"]
        if (rn is None) != (rb is None) or (rn is not None and not (
                math.isclose(rn, rb, rel_tol=0.0, abs_tol=atol) or (math.isnan(rn) and math.isnan(rb)))):
            failures.append(f"{where}: reward {rn!r} vs baseline {rb!r} (|Δ| > {atol:g})")
        if len(failures) > before:
            failed_rows.add(row)
    new_rows = sorted({k[:2] for k in new} - {k[:2] for k in base})
    rows = sorted({k[0] for k in base})
    lines = [f"exactness gate: {len(base)} baseline documents over {len(rows)} row(s): {', '.join(rows)}"]
    if new_rows:
        lines.append("new (not in the baseline, not gated): " + ", ".join(f"{r} / {t}" for r, t in new_rows))
    if failures:
        lines += [f"FAIL: {len(failures)} difference(s) in row(s) {', '.join(sorted(failed_rows))}:",
                  *[f"- {f}" for f in failures]]
        lines.append("If the change is deliberate, regenerate the baseline (docs/leaderboard.md, "
                     "'Regenerating the baselines') and commit the diff.")
        return 1, "\n".join(lines)
    lines.append(f"OK: every response identical and every reward within {atol:g}.")
    return 0, "\n".join(lines)
