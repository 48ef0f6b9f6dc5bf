"""An on-disk judge cache (sqlite): a rerun of the same judgements costs no requests.

Keys are the sha256 of (judge model, request settings, rendered prompt); the rendered prompt contains
the judge template, the question and the answer, so the key covers (judge model, prompt, answer).
Values are the judge's top next-token probabilities as JSON. Each ``put`` is its own sqlite
transaction, so an interrupted run keeps every answer it already paid for and never a partial one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from emprobe.io import content_hash, emprobe_home


def default_cache_path() -> Path:
    """``$EMPROBE_HOME/judge_cache.sqlite``."""
    return emprobe_home() / "judge_cache.sqlite"


class JudgeCache:
    """A thread-safe ``key -> {token: probability}`` store in one sqlite file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                             "probs TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, prompt: str, settings: dict[str, Any] | None = None) -> str:
        return content_hash({"model": model, "prompt": prompt, "settings": settings or {}})

    def get(self, key: str) -> dict[str, float] | None:
        with self._lock:
            row = self._db.execute("SELECT probs FROM judgements WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, model: str, probs: dict[str, float]) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO judgements (key, model, probs) VALUES (?, ?, ?)",
                             (key, model, json.dumps(probs, sort_keys=True)))

    def __bool__(self) -> bool:  # an empty cache is still a cache
        return True

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
