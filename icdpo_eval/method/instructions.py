"""The instruction lines of the in-context template, as an input (model_arg ``instructions``).

* ``ours`` (default): our own wording (:data:`icdpo_eval.method.prompts.HH` / ``SYNTHETIC``); the contexts then
  differ from the released code's from their first character;
* ``released``: the authors' lines, fetched at run time from their repository at the pinned commit
  (:data:`RELEASED`: ``load_data/hh.py`` lines 48 and 50, ``load_data/syntheticgpt.py`` lines 49 and 51), checked
  against the sha256 pinned here and cached under the cache dir; the package ships no copy of them. Offline and
  not cached, this fails at once, saying to pass a file;
* a path to a JSON file ``{"positive": "<line>", "negative": "<line>"}`` (UTF-8): the two lines for every task.

The results record the source and the sha256 of the lines used (:attr:`Instructions.info`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from icdpo_eval.config import settings
from icdpo_eval.errors import OptionError
from icdpo_eval.runtime import atomic_write, locked

log = logging.getLogger(__name__)

RELEASED_REPO = "F2-Song/ICDPO"
RELEASED_COMMIT = "22f9ee23ac2144242ba507858be7a2aa3d5fbee8"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
FETCH_TIMEOUT = 10.0


@dataclass(frozen=True)
class ReleasedLines:
    path: str
    positive_line: int  # 1-based line numbers of the two assignments
    negative_line: int
    positive_sha256: str
    negative_sha256: str


# template family -> where the released code holds its lines, and their sha256 (the lines themselves are fetched)
RELEASED: dict[str, ReleasedLines] = {
    "hh": ReleasedLines("load_data/hh.py", 48, 50,
                        "75f2fb0e9fb1a25110263e4d8a10aa411e4fb71c9172613e20ebf43ed316519d",
                        "4f50a15d6dbfb6e021dad8b5fd28d303d85efbefaf1b28a393d67aff9ed9110f"),
    "synthetic": ReleasedLines("load_data/syntheticgpt.py", 49, 51,
                               "e472bbd86019b7685c327fa3ad6446799cb7f7a05408f3de9492ed015bc106f0",
                               "728148cf6abbabaf9ebf7df44cc1747ce82a7071554cd58b85db984bc23a890e"),
}
FILE_HINT = ('a JSON file {"positive": "<instruction line>", "negative": "<instruction line>"} '
             "(e.g. the released lines, load_data/hh.py lines 48 and 50 of github.com/F2-Song/ICDPO)")


@dataclass(frozen=True)
class Instructions:
    """Positive and negative instruction lines per template family (``None``: the template's own)."""

    spec: str
    source: str
    lines: dict[str, tuple[str, str]]  # family -> (positive, negative); missing family = ours

    def for_family(self, family: str) -> tuple[str, str] | None:
        return self.lines.get(family)

    @property
    def sha256(self) -> str:
        blob = json.dumps(sorted(self.lines.items()), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @property
    def info(self) -> dict[str, str]:
        """What the results record."""
        return {"instructions": self.spec, "instructions_source": self.source,
                "instructions_sha256": "ours" if not self.lines else self.sha256}


OURS = Instructions("ours", "icdpo-eval's own wording (icdpo_eval.method.prompts)", {})


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_line(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise OptionError(f"{where} must be a non-empty string; {FILE_HINT}")
    if "\n" in text.strip("\n"):
        raise OptionError(f"{where} must be one line (no line break inside); {FILE_HINT}")
    return text


def from_file(path: str) -> Instructions:
    p = Path(path).expanduser()
    if not p.is_file():
        raise OptionError(f"model_arg instructions={path!r}: not ours, released, nor an existing file; pass "
                          f"{FILE_HINT}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise OptionError(f"model_arg instructions={path}: not valid UTF-8 JSON ({e}); pass {FILE_HINT}") from None
    if not isinstance(data, dict) or set(data) != {"positive", "negative"}:
        raise OptionError(f"model_arg instructions={path}: needs exactly the keys positive and negative; "
                          f"pass {FILE_HINT}")
    pos = _check_line(data["positive"], f"{path}: 'positive'")
    neg = _check_line(data["negative"], f"{path}: 'negative'")
    return Instructions(str(path), f"file {p.resolve()}", {"hh": (pos, neg), "synthetic": (pos, neg),
                                                            "other": (pos, neg)})


def _extract(source: str, line: int, where: str) -> str:
    """The string literal assigned on 1-based ``line`` of a Python source."""
    lines = source.splitlines()
    if len(lines) < line or "=" not in lines[line - 1]:
        raise OptionError(f"instructions=released: {where} line {line} is not an assignment")
    try:
        value = ast.literal_eval(lines[line - 1].split("=", 1)[1].strip())
    except (ValueError, SyntaxError):
        raise OptionError(f"instructions=released: {where} line {line} holds no string literal") from None
    if not isinstance(value, str):
        raise OptionError(f"instructions=released: {where} line {line} holds no string literal")
    return value


def fetch_pinned(repo: str, commit: str, path: str, what: str, hint: str) -> str:
    """The UTF-8 text of ``path`` in github ``repo`` at ``commit`` (the caller checks its sha256 and caches it).
    Unreachable: one line naming ``what`` and the file to pass instead (``hint``)."""
    url = RAW_URL.format(repo=repo, commit=commit, path=path)
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as resp:  # noqa: S310 - a fixed https URL
            return resp.read().decode("utf-8")
    except (OSError, ValueError) as e:
        raise OptionError(f"{what}: could not fetch {url} ({type(e).__name__}: {e}); offline, pass {hint}") from None


def _fetch(path: str) -> str:
    return fetch_pinned(RELEASED_REPO, RELEASED_COMMIT, path, "instructions=released",
                        f"instructions=FILE with {FILE_HINT}")


def released() -> Instructions:
    """The released lines of every family: from the cache, else fetched once and checked (see module doc)."""
    cache = settings.cache_dir() / "instructions" / f"released-{RELEASED_COMMIT[:12]}.json"
    with locked(cache):
        lines: dict[str, tuple[str, str]] = {}
        if cache.is_file():
            try:
                lines = {k: (v[0], v[1]) for k, v in json.loads(cache.read_text(encoding="utf-8")).items()}
            except (ValueError, KeyError, TypeError, IndexError):
                log.warning("instructions: ignoring unreadable cache %s", cache)
                lines = {}
        if not all(f in lines and (_sha(lines[f][0]), _sha(lines[f][1])) == (r.positive_sha256, r.negative_sha256)
                   for f, r in RELEASED.items()):
            lines = {}
            for family, r in RELEASED.items():
                src = _fetch(r.path)
                pos = _extract(src, r.positive_line, r.path)
                neg = _extract(src, r.negative_line, r.path)
                if (_sha(pos), _sha(neg)) != (r.positive_sha256, r.negative_sha256):
                    raise OptionError(f"instructions=released: the lines fetched from {r.path} at {RELEASED_COMMIT} "
                                      "do not match their pinned sha256; pass instructions=FILE instead")
                lines[family] = (pos, neg)
            atomic_write(cache, lambda fh: json.dump({k: list(v) for k, v in lines.items()}, fh, ensure_ascii=False))
    lines["other"] = lines["hh"]
    return Instructions("released", f"github.com/{RELEASED_REPO}@{RELEASED_COMMIT} "
                        f"({RELEASED['hh'].path}:{RELEASED['hh'].positive_line},{RELEASED['hh'].negative_line}; "
                        f"{RELEASED['synthetic'].path}:{RELEASED['synthetic'].positive_line},"
                        f"{RELEASED['synthetic'].negative_line})", lines)


def load(spec: str | None) -> Instructions:
    """``ours`` | ``released`` | a JSON file (module docstring)."""
    spec = (spec or "ours").strip()
    if spec == "ours":
        return OURS
    if spec == "released":
        return released()
    return from_file(spec)
