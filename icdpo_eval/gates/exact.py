"""The exactness gate: per-document responses and rewards of a leaderboard vs a committed baseline.

The embedded pipeline is deterministic under a seed (every document's samples depend only on the
seed and the document), so a change to our code that alters *any* method's output shows up as a
different response or reward on some document, long before it moves a mean past a confidence
interval. ``icdpo-eval leaderboard`` writes ``DIR/documents.jsonl``, one line per (row, task, document)::

    {"row": "ICDPO", "task": "hh_harmless_mini", "doc_id": "3", "response": "...", "reward": 0.1234,
     "scores": [1.2, -0.4, 0.3], "index": 0, "terms": {"positive": [...], "zero_shot": [...]}}

(``scores`` / ``index`` / ``terms``: every candidate's score, the chosen candidate and each scorer term per
candidate, for the methods that select among candidates; absent for the others) and ``icdpo-eval compare DIR
BASELINE_DOCS.jsonl --exact`` compares it with the committed file: responses byte for byte, rewards, candidate
scores and scorer terms to ``--atol`` plus ``--rtol`` times their size (defaults 1e-6 and 1e-5: a term is a
float32 sum of log-probs, whose last bits move with the decode kernels a machine measured and chose; seen on fresh
caches: RM-BoN's teacher terms moved by up to 6e-7 of their size, ICDPO's sampled term -8.77802 by 2.7e-6 of its
size (a clean clone probing its kernels under load); a score, a difference of terms, is held to its largest term's
size: Ŝ of 1.948 moved by 1.9e-5 when its terms of about -40 moved by 5e-7 of theirs), the chosen index exactly.
So a change to one scorer term
that flips no choice still fails. It exits 1 naming the row, task, document and the first differing token (or
the values); a baseline row or document missing from the new run fails too; rows only in the new run are listed
as new. A deliberate change regenerates
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
        line = {"row": row, "task": task, "doc_id": str(s["doc_id"]),
                "response": resp if isinstance(resp, str) else json.dumps(resp),
                "reward": None if reward is None else float(reward)}
        rec = s.get("icdpo_eval")  # what the method computed (models/details.py): candidates, scores, terms
        if isinstance(rec, dict) and isinstance(rec.get("scores"), list):
            line["scores"] = [float(x) for x in rec["scores"]]
            line["index"] = rec.get("index")
            if isinstance(rec.get("terms"), dict):
                line["terms"] = {str(k): [float(x) for x in v] for k, v in sorted(rec["terms"].items())}
        out.append(line)
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
            _check_computed(d)
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:  # ValueError: UTF-8, JSON
            raise GateError(f"{p}:{line_no}: not a documents line with row/task/doc_id/response/reward "
                            f"({exc.__class__.__name__}: {str(exc)[:200]}); lines are written by "
                            "`icdpo-eval leaderboard` (DIR/documents.jsonl)") from None
        out[key] = d
    if not out:
        raise GateError(f"{p}: no documents")
    return out


def _numbers(value: Any, name: str) -> list[float]:
    if not isinstance(value, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in value):
        raise TypeError(f"{name!r} must be a list of numbers")
    return [float(x) for x in value]


def _check_computed(d: dict[str, Any]) -> None:
    """The optional ``scores`` / ``index`` / ``terms`` of a documents line, type-checked in place."""
    if "scores" in d:
        d["scores"] = _numbers(d["scores"], "scores")
        index = d.get("index")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise TypeError("'index' must be an integer or null")
    if "terms" in d:
        if not isinstance(d["terms"], dict):
            raise TypeError("'terms' must be a mapping of term name to a list of numbers")
        d["terms"] = {str(k): _numbers(v, f"terms.{k}") for k, v in d["terms"].items()}


RTOL = 1e-5  # ~80 float32 ulps: the default relative tolerance of candidate scores and scorer terms


def _close(a: float, b: float, atol: float, rtol: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol) or (math.isnan(a) and math.isnan(b)) or a == b


def _computed_differences(n: dict[str, Any], b: dict[str, Any], atol: float, rtol: float = RTOL) -> list[str]:
    """What differs in the candidate scores, the chosen index and the scorer terms (those the baseline has)."""
    out = []
    if "scores" in b:
        if "scores" not in n:
            return ["no candidate scores in the new run (the baseline has them)"]
        sn, sb = n["scores"], b["scores"]
        if len(sn) != len(sb):
            out.append(f"{len(sn)} candidate scores vs {len(sb)} in the baseline")
        else:
            # a score is a difference of its terms (S, Ŝ): as noisy as the largest of them, not as its own size
            size = [max([abs(x)] + [abs(v[i]) for v in (b.get("terms") or {}).values() if i < len(v)])
                    for i, x in enumerate(sb)]
            bad = [i for i, (x, y) in enumerate(zip(sn, sb)) if not _close(x, y, atol + rtol * size[i])]
            if bad:
                i = bad[0]
                out.append(f"candidate scores differ at {len(bad)} of {len(sb)} (candidate {i}: {sn[i]!r} vs "
                           f"baseline {sb[i]!r}, |Δ| > {atol:g} + {rtol:g}·|largest term|)")
        if n.get("index") != b.get("index"):
            out.append(f"chosen candidate {n.get('index')!r} vs baseline {b.get('index')!r}")
    for term, vb in (b.get("terms") or {}).items():
        vn = (n.get("terms") or {}).get(term)
        if vn is None:
            out.append(f"scorer term {term!r} missing from the new run")
        elif len(vn) != len(vb) or any(not _close(x, y, atol, rtol) for x, y in zip(vn, vb)):
            out.append(f"scorer term {term!r} differs ({vn!r} vs baseline {vb!r})")
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
                      atol: float = 1e-6, rtol: float = RTOL) -> tuple[int, str]:
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
        failures += [f"{where}: {d}" for d in _computed_differences(n, b, atol, rtol)]
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
    lines.append(f"OK: every response identical, every reward within {atol:g}, every candidate score and scorer term "
                 f"within {atol:g} + {rtol:g}·|value|, every chosen candidate the same.")
    return 0, "\n".join(lines)
