"""``lock.sqlite``: the embedded lock store, one SQLite file shared by the sidecars of one
machine (``connectionString``, default ``$TANDEM_HOME/lock.db``). Each call is one
``BEGIN IMMEDIATE`` transaction, so two processes never both see a lock free."""

from __future__ import annotations

import time

from tandem.blocks.component_metadata import as_seconds, lookup
from tandem.blocks.lock.store import UnlockStatus
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.sqlite_files import SqliteThread

_SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (
  resource TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  expires_at REAL NOT NULL
)
"""


class SqliteLockStore:
    def __init__(self, path: str, busy_timeout: float) -> None:
        self._sql = SqliteThread(path, busy_timeout, _SCHEMA, name="lock-sqlite")

    def _try_lock(self, resource: str, owner: str, expiry_seconds: int) -> bool:
        conn = self._sql.db()
        now = time.time()  # wall clock: the file is shared by processes
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "DELETE FROM locks WHERE resource = ? AND expires_at <= ?", (resource, now)
            )
            cur = conn.execute(
                "INSERT OR IGNORE INTO locks (resource, owner, expires_at) VALUES (?, ?, ?)",
                (resource, owner, now + expiry_seconds),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cur.rowcount == 1

    def _unlock(self, resource: str, owner: str) -> UnlockStatus:
        conn = self._sql.db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT owner FROM locks WHERE resource = ? AND expires_at > ?",
                (resource, time.time()),
            ).fetchone()
            if row is None:
                status = UnlockStatus.LOCK_DOES_NOT_EXIST
            elif row[0] != owner:
                status = UnlockStatus.LOCK_BELONGS_TO_OTHERS
            else:
                conn.execute("DELETE FROM locks WHERE resource = ?", (resource,))
                status = UnlockStatus.SUCCESS
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return status

    async def try_lock(self, resource: str, owner: str, expiry_seconds: int) -> bool:
        return bool(await self._sql.run(self._try_lock, resource, owner, expiry_seconds))

    async def unlock(self, resource: str, owner: str) -> UnlockStatus:
        return UnlockStatus(await self._sql.run(self._unlock, resource, owner))

    async def close(self) -> None:
        await self._sql.close()


def create(spec: ComponentSpec, ctx: ComponentContext) -> SqliteLockStore:
    md = spec.metadata
    path = lookup(md, "connectionString") or str(ctx.home / "lock.db")
    return SqliteLockStore(path, as_seconds("busyTimeout", lookup(md, "busyTimeout"), 5.0))
