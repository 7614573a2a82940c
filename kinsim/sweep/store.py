"""The results of sweeps in SQLite, one row per point, keyed by a content hash of its resolved inputs.

The key is the SHA-256 of the resolved workload and hardware (every key written out, units in SI), the
kinsim version and a digest of kinsim's own source, so the same simulation is never run twice, whichever
sweep file asked for it, an interrupted sweep resumes where it stopped, and a changed engine or cost model
(the version string moves only at releases) never serves figures it did not compute.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import kinsim
from kinsim import __version__
from kinsim.errors import SpecError

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    sweep TEXT NOT NULL,
    point TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    inputs TEXT NOT NULL,
    metrics TEXT NOT NULL,
    wall_time_s REAL NOT NULL,
    finished TEXT NOT NULL
)
"""


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over every Python file of the installed kinsim package (relative path and bytes, in order)."""
    root = Path(kinsim.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def content_key(inputs: dict[str, Any]) -> str:
    """SHA-256 of ``inputs`` (canonical JSON), the kinsim version and :func:`source_digest`."""
    text = json.dumps({"kinsim": __version__, "source": source_digest(), "inputs": inputs}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResultStore:
    """An SQLite file of sweep points."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path)
        try:
            self.db.execute(SCHEMA)
            self.db.commit()
        except sqlite3.DatabaseError as error:
            self.db.close()
            raise SpecError(f"not a kinsim results file ({error})", path="--db", value=str(self.path)) from None

    def close(self) -> None:
        self.db.close()

    def __len__(self) -> int:
        """How many points are stored."""
        return self.db.execute("SELECT COUNT(*) FROM points").fetchone()[0]

    def done(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM points WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, sweep: str, point: dict, status: str, reason: str, inputs: dict, metrics: dict,
            wall_time_s: float) -> None:
        """Record one point (committed at once, so an interruption loses nothing finished)."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.db.execute("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, sweep, json.dumps(point, sort_keys=True), status, reason, json.dumps(inputs),
                         json.dumps(metrics), wall_time_s, now))
        self.db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT point, status, reason, inputs, metrics, wall_time_s FROM points WHERE key = ?",
                              (key,)).fetchone()
        if row is None:
            return None
        point, status, reason, inputs, metrics, wall = row
        return {"key": key, "point": json.loads(point), "status": status, "reason": reason,
                "inputs": json.loads(inputs), "metrics": json.loads(metrics), "wall_time_s": wall}
