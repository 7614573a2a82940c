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
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
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

#: Seconds to wait for another process's lock on the results file before giving up.
LOCK_TIMEOUT_S = 5.0

#: The tables of a results file and their columns; a file with any other table, or without one of these
#: columns, is not a kinsim results file (SQLite's own ``sqlite_*`` tables aside).
TABLES = {"points": ("key", "sweep", "point", "status", "reason", "inputs", "metrics", "wall_time_s", "finished")}


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
    """An SQLite file of sweep points.

    The file is made when the first point is stored, so a sweep that stops before storing any point (bad
    input, a crash, a full disk) leaves no empty results file. Every SQLite error (a locked database, a full
    disk, a file that is not a database, tables kinsim did not make) is a :class:`SpecError` naming
    ``option`` and the path."""

    def __init__(self, path: str | Path, option: str = "--db") -> None:
        self.path = Path(path)
        self.option = option
        self.db: sqlite3.Connection | None = None
        if os.path.lexists(self.path):
            self._connect()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite errors as one line naming the option and the file."""
        try:
            yield
        except sqlite3.Error as error:
            if isinstance(error, sqlite3.OperationalError) or not isinstance(error, sqlite3.DatabaseError):
                rule = f"cannot be used ({error})"
            else:  # "file is not a database", "database disk image is malformed"
                rule = f"not a kinsim results file ({error})"
            raise SpecError(rule, path=self.option, file=str(self.path)) from None

    def _connect(self) -> sqlite3.Connection:
        """Open (or make) the file, check that its tables are kinsim's, make those missing."""
        if self.db is not None:
            return self.db
        with self._errors():
            db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
            try:
                self._check_schema(db)
                db.execute(SCHEMA)
                db.commit()
            except BaseException:
                db.close()
                raise
        self.db = db
        return db

    def _check_schema(self, db: sqlite3.Connection) -> None:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                  if not name.startswith("sqlite_")]
        foreign = sorted(set(tables) - set(TABLES))
        if foreign:
            raise SpecError("not a kinsim results file (it has tables kinsim did not make: " + ", ".join(foreign)
                            + ")", path=self.option, file=str(self.path), hint="give another --db path")
        for table in tables:
            columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in TABLES[table] if c not in columns]
            if missing:
                raise SpecError(f"not a kinsim results file (table {table} has no column " + ", ".join(missing)
                                + ")", path=self.option, file=str(self.path), hint="give another --db path")

    def _reader(self) -> sqlite3.Connection | None:
        """The connection for reading; ``None`` while no file exists (nothing stored yet)."""
        if self.db is None and os.path.lexists(self.path):
            return self._connect()
        return self.db

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def __len__(self) -> int:
        """How many points are stored."""
        db = self._reader()
        if db is None:
            return 0
        with self._errors():
            return db.execute("SELECT COUNT(*) FROM points").fetchone()[0]

    def done(self, key: str) -> bool:
        db = self._reader()
        if db is None:
            return False
        with self._errors():
            return db.execute("SELECT 1 FROM points WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, sweep: str, point: dict, status: str, reason: str, inputs: dict, metrics: dict,
            wall_time_s: float) -> None:
        """Record one point (committed at once, so an interruption loses nothing finished)."""
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        db = self._connect()
        with self._errors():
            db.execute("INSERT OR REPLACE INTO points (key, sweep, point, status, reason, inputs, metrics, "
                       "wall_time_s, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (key, sweep, json.dumps(point, sort_keys=True), status, reason, json.dumps(inputs),
                        json.dumps(metrics), wall_time_s, now))
            db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        db = self._reader()
        if db is None:
            return None
        with self._errors():
            row = db.execute("SELECT point, status, reason, inputs, metrics, wall_time_s FROM points WHERE key = ?",
                             (key,)).fetchone()
        if row is None:
            return None
        point, status, reason, inputs, metrics, wall = row
        try:
            return {"key": key, "point": json.loads(point), "status": status, "reason": reason,
                    "inputs": json.loads(inputs), "metrics": json.loads(metrics), "wall_time_s": wall}
        except (TypeError, ValueError) as error:  # a row kinsim did not write
            raise SpecError(f"not a kinsim results file (point {key[:12]}: {error})", path=self.option,
                            file=str(self.path)) from None
