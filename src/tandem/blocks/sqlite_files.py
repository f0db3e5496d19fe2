"""Opening the SQLite files the embedded components share between processes."""

from __future__ import annotations

import sqlite3
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
        conn.execute("PRAGMA journal_mode=WAL")
    except BaseException:
        conn.close()
        raise
    return conn
