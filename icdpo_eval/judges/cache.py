"""On-disk verdict cache of the pairwise LLM judge (stdlib ``sqlite3``).

One row per judged comparison, keyed by the sha256 of (judge model, prompt version, dialogue,
response shown as A, response shown as B), so the order is part of the key. Each verdict is
committed as soon as it arrives: an interrupted run resumes where it stopped and a rerun makes no
request for a comparison already judged. Only parsed verdicts are stored (an unparsable answer is
asked again on the next run).

Default location: ``<cache dir>/judge/verdicts.sqlite``; ``$ICDPO_JUDGE_CACHE`` overrides it (a directory,
or a file path ending in ``.sqlite``/``.db``).
Safe across threads (one connection behind a lock) and across processes (sqlite's file locking).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from icdpo_eval.config import settings
from icdpo_eval.runtime import SqliteStore

DB_NAME = "verdicts.sqlite"


def default_cache_path() -> Path:
    return settings.judge_cache_path()


def verdict_key(model: str, prompt_version: str, dialogue: str, response_a: str, response_b: str) -> str:
    payload = json.dumps([model, prompt_version, dialogue, response_a, response_b], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class VerdictCache(SqliteStore):
    """``get(key) -> verdict | None`` and ``put(key, verdict, raw, model)``, thread-safe."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(Path(path) if path is not None else default_cache_path(),
                         "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL, "
                         "raw TEXT, model TEXT, created REAL)")

    def get(self, key: str) -> str | None:
        rows = self.query("SELECT verdict FROM verdicts WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def put(self, key: str, verdict: str, raw: str, model: str) -> None:
        self.query("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", (key, verdict, raw, model, time.time()))

    def __len__(self) -> int:
        return int(self.query("SELECT COUNT(*) FROM verdicts")[0][0])
