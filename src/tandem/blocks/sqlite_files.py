"""Opening the SQLite files the embedded components share between processes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect_wal(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A connection in WAL mode, safe for several processes writing one file.

    ``isolation_level=None`` because callers issue ``BEGIN IMMEDIATE``/``COMMIT`` themselves
    (taking the write lock up front avoids deadlocking upgrades between processes);
    ``check_same_thread=False`` because each component keeps it on its own worker thread.
    """
    uri = path.startswith("file:")
    if not uri and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
    )
    try:
        _enter_wal(conn, busy_timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def _enter_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
    locked" to the other processes opening it at that moment without calling the busy
    handler; so retry within the busy timeout (runs on the component's worker thread)."""
    deadline = time.monotonic() + max(busy_timeout, 1.0)
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
