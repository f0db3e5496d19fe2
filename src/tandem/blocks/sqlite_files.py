"""Opening the SQLite files the embedded components share between processes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")


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


class SqliteThread:
    """One lazily opened WAL connection, used only from one worker thread: blocking calls
    run off the event loop, one at a time, in order. ``schema`` runs once on opening."""

    def __init__(self, path: str, busy_timeout: float, schema: str, *, name: str) -> None:
        self._path, self._busy_timeout, self._schema = path, busy_timeout, schema
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

    def db(self) -> sqlite3.Connection:
        """The connection (call only from functions given to ``run``)."""
        if self._conn is None:
            conn = connect_wal(self._path, self._busy_timeout)
            conn.execute(self._schema)
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def disconnect(self) -> None:
        """Close the connection; the next ``db()`` opens a new one (run it with ``run``)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self.run(self.disconnect)
        self._executor.shutdown(wait=False)
