"""The per-document result journal: a killed ``generate_until`` run resumes where it stopped.

Each finished document is appended (one JSON line, flushed and fsynced, as each batch finishes) to
``<journal dir>/<config hash>/rank<r>.jsonl``; a rerun of the same command reads every rank's file of its
config hash and generates only the documents not there. The config hash covers the options that
change results (their declaration, :mod:`icdpo_eval.config.options`), the resolved values that do (SBERT,
instructions, adapter provenance) and the code of the installed package, so a changed option or a changed
line of code never reuses a stale entry. A document's key is (task, doc id, prompt, generation kwargs).

Journal dir: ``$ICDPO_JOURNAL_DIR``, else ``<cache dir>/journal`` (``$ICDPO_CACHE_DIR``, default
``~/.cache/icdpo_eval``; :mod:`icdpo_eval.config.settings`). ``--model_args resume=false`` turns the journal off;
delete the folder to clear it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from icdpo_eval.config import settings
from icdpo_eval.runtime import atomic_write

log = logging.getLogger(__name__)

def journal_root() -> Path:
    return settings.journal_dir()


def package_roots() -> list[Path]:
    """The folders of the installed package and of its mapped subpackages (``baselines/``, ``tasks/``), found
    without importing them (``importlib.util.find_spec`` imports only the top package)."""
    import importlib.util

    roots = set()
    for name in ("icdpo_eval", "icdpo_eval.baselines", "icdpo_eval.tasks"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            roots.update(Path(p).resolve() for p in spec.submodule_search_locations)
    return sorted(roots)


@functools.cache
def code_fingerprint() -> str:
    """sha256 of every source file of the installed package (icdpo_eval, its baselines and tasks)."""
    h = hashlib.sha256()
    for root in package_roots():
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def library_versions() -> dict[str, str]:
    """The versions of the libraries whose arithmetic a journaled document depends on."""
    import importlib.metadata

    out = {}
    for dist in ("torch", "transformers", "lm_eval", "peft", "sentence-transformers"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


class Journal:
    """The journal of one effective model config (see the module docstring)."""

    def __init__(self, config: dict[str, Any], *, rank: int = 0, root: Path | None = None) -> None:
        self.config_hash = _digest({"config": config, "code": code_fingerprint(),
                                    "libraries": library_versions()})[:20]
        self.dir = (root or journal_root()) / self.config_hash
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / "config.json",
                     lambda fh: fh.write(json.dumps(config, indent=1, sort_keys=True, default=str) + "\n"))
        self.path = self.dir / f"rank{rank}.jsonl"
        self.entries: dict[str, dict[str, Any]] = {}
        for path in sorted(self.dir.glob("rank*.jsonl")):
            self._read(path)

    def _read(self, path: Path) -> None:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    rec = json.loads(line)
                    self.entries[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    # a line cut by a kill mid-write: that document is generated again
                    log.warning("journal: skipping unreadable line %s:%d", path, n)

    @staticmethod
    def doc_key(task: str | None, doc_id: Any, prompt: str, gen_kwargs: dict[str, Any]) -> str:
        return _digest([task, doc_id, prompt, gen_kwargs])

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def add(self, records: list[dict[str, Any]]) -> None:
        """Append finished documents (``key``, ``task``, ``doc_id``, ``response``, optional candidates/scores/index)."""
        if not records:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                self.entries[rec["key"]] = rec
            fh.flush()
            os.fsync(fh.fileno())
