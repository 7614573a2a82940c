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
import socket
import sqlite3
import time
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

CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    since REAL NOT NULL
)
"""

#: Seconds to wait for another process's lock on the results file before giving up.
LOCK_TIMEOUT_S = 5.0
#: A claim not renewed for this many seconds is taken over even if its owner seems alive (another host,
#: whose processes cannot be checked; or a process id reused after its owner died). The owner renews its
#: claims whenever it stores a result, so only a single point longer than this can be simulated twice.
CLAIM_STALE_S = 3600.0

#: The tables of a results file and their columns; a file with any other table, or without one of these
#: columns, is not a kinsim results file (SQLite's own ``sqlite_*`` tables aside).
TABLES = {"points": ("key", "sweep", "point", "status", "reason", "inputs", "metrics", "wall_time_s", "finished"),
          "claims": ("key", "host", "pid", "since")}


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
            if self._has_claims(db):
                db.execute("DELETE FROM claims WHERE key = ?", (key,))
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

    # Claims: several sweeps on one file share the work. A sweep claims a point before simulating it; a point
    # claimed by another live sweep is left to it (the claimant waits for its result), a stale claim is taken
    # over. The results file is made by the first claim, as by the first stored point.

    def claim(self, key: str) -> str:
        """Try to claim the point ``key`` for this process: ``"claimed"``, ``"done"`` (stored meanwhile) or
        ``"busy"`` (another live sweep holds it)."""
        db = self._connect()
        owner = _owner()
        with self._errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(CLAIMS)  # made with the first claim: reading a file never changes it
                if db.execute("SELECT 1 FROM points WHERE key = ?", (key,)).fetchone() is not None:
                    return "done"
                row = db.execute("SELECT host, pid, since FROM claims WHERE key = ?", (key,)).fetchone()
                if row is not None and (row[0], row[1]) != owner and _claim_alive(*row):
                    return "busy"
                db.execute("INSERT OR REPLACE INTO claims (key, host, pid, since) VALUES (?, ?, ?, ?)",
                           (key, owner[0], owner[1], time.time()))
                return "claimed"
            finally:
                db.commit()

    def renew(self, keys: list[str]) -> None:
        """Renew this process's claims on ``keys`` (they are still being simulated)."""
        if self.db is None or not keys or not self._has_claims(self.db):
            return
        host, pid = _owner()
        with self._errors():
            self.db.executemany("UPDATE claims SET since = ? WHERE key = ? AND host = ? AND pid = ?",
                                [(time.time(), key, host, pid) for key in keys])
            self.db.commit()

    def release(self, keys: list[str]) -> None:
        """Give up this process's claims on ``keys`` (stopped before storing them)."""
        if self.db is None or not keys or not self._has_claims(self.db):
            return
        host, pid = _owner()
        with self._errors():
            self.db.executemany("DELETE FROM claims WHERE key = ? AND host = ? AND pid = ?",
                                [(key, host, pid) for key in keys])
            self.db.commit()

    def claimed_by_others(self) -> int:
        """How many live claims other processes hold."""
        db = self._reader()
        if db is None or not self._has_claims(db):
            return 0
        owner = _owner()
        with self._errors():
            rows = db.execute("SELECT host, pid, since FROM claims").fetchall()
        return sum((host, pid) != owner and _claim_alive(host, pid, since) for host, pid, since in rows)


    def _has_claims(self, db: sqlite3.Connection) -> bool:
        with self._errors():
            return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'claims'").fetchone() \
                is not None


def _owner() -> tuple[str, int]:
    """Who claims: this host and process."""
    return socket.gethostname(), os.getpid()


def _claim_alive(host: str, pid: int, since: float) -> bool:
    """Whether a claim may still be honoured: renewed within :data:`CLAIM_STALE_S`, and on this host only while
    its process lives."""
    if time.time() - since > CLAIM_STALE_S:
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
