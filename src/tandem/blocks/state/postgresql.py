"""``state.postgresql`` (v1 and v2): state in a PostgreSQL table, over one asyncpg pool.

Table ``tableName`` (default ``state``): ``key`` (primary key), ``value`` (the bytes exactly
as written), ``value_json`` (the value as ``jsonb`` when it is a JSON document, else NULL —
the "not JSON" flag; v1 fills it for the query API, v2 leaves it NULL), ``version`` (the
etag, drawn from the sequence ``<table>_version`` so a re-created key never repeats one),
``expires_at`` and ``updated_at``.

Concurrency: every check-and-set is one statement whose WHERE clause carries the check
(``version = $etag``, or "missing or expired" for first-write inserts); PostgreSQL
re-evaluates it on the row it locks, so of concurrent writers holding one etag exactly
one wins. A transaction runs its operations in one database transaction; a failed check
rolls it back. A bulk save or delete is one database transaction too, on one pooled
connection (readers use the others): an item whose check fails matched no row, so it
changed nothing and is reported while the rest commit. Expired rows are never returned by a read nor count for a check; the
cleanup task only reclaims their space (the instance that wins the row in
``metadataTableName`` does it, so several sidecars don't all sweep).

The pool is created with the component and connects lazily (``min_size=0``): the runtime
starts while the database is down, a dropped connection is discarded and the next request
dials again, so the store recovers on its own when the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from tandem.blocks.coalesce import Coalescer
from tandem.blocks.component_metadata import ComponentConfigError, as_int, as_seconds, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.query import (
    QueryItem,
    QueryRequest,
    QueryResult,
    json_document,
    next_token,
)
from tandem.blocks.state.query_sql import postgres_select
from tandem.blocks.state.store import (
    BulkGetItem,
    DeleteRequest,
    ETagMismatch,
    Feature,
    GetRequest,
    GetResponse,
    SetRequest,
    StoreError,
    TransactionOperation,
    parse_version,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# libpq keyword/value connection strings: the keywords asyncpg takes as arguments.
_KEYWORDS = {
    "host": "host",
    "hostaddr": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "database": "database",
    "connect_timeout": "timeout",
    "sslmode": "ssl",
}
_LIVE = "(expires_at IS NULL OR expires_at > now())"
_EXPIRES = "(CASE WHEN {ttl}::int > 0 THEN now() + make_interval(secs => {ttl}::int) END)"


def create(spec: ComponentSpec, ctx: ComponentContext) -> PostgresStateStore:
    md = spec.metadata
    table = _table_name(lookup(md, "tableName") or "state", "tableName")
    meta = _table_name(lookup(md, "metadataTableName") or "dapr_metadata", "metadataTableName")
    timeout = as_seconds("timeout", lookup(md, "timeout", "timeoutInSeconds"), 20.0)
    cleanup = as_seconds(
        "cleanupInterval",
        lookup(md, "cleanupInterval", "cleanupIntervalInSeconds", "cleanupIntervalInSecond"),
        3600.0,
    )
    return PostgresStateStore(
        connect_args(md, timeout),
        table=table,
        metadata_table=meta,
        timeout=timeout,
        cleanup_interval=cleanup,
        max_connections=as_int("maxConns", lookup(md, "maxConns"), 10),
        idle_lifetime=as_seconds(
            "connectionMaxIdleTime", lookup(md, "connectionMaxIdleTime"), 300.0
        ),
        queryable=spec.version == "v1",
        name=spec.name,
    )


def _table_name(raw: str, what: str) -> tuple[str, ...]:
    """``table`` or ``schema.table``, each part a plain identifier."""
    parts = tuple(raw.split("."))
    if len(parts) > 2 or not all(_IDENT.match(p) for p in parts):
        raise ComponentConfigError(f"{what} {raw!r} is not a plain [schema.]table name")
    return parts


def _quoted(parts: tuple[str, ...], suffix: str = "") -> str:
    *schema, name = parts
    return ".".join([*(f'"{s}"' for s in schema), f'"{name}{suffix}"'])


def connect_args(md: Mapping[str, str], timeout: float) -> dict[str, Any]:
    """asyncpg connection arguments from Dapr's metadata: ``connectionString`` as a URL
    (``postgres://…``) or libpq keyword/value pairs; with no URL, the ``host``, ``port``,
    ``database``, ``user`` and ``password`` fields fill what the pairs leave out."""
    args: dict[str, Any] = {}
    conn = (lookup(md, "connectionString") or "").strip()
    if conn.startswith(("postgres://", "postgresql://")):
        args["dsn"] = conn
    elif conn:
        try:
            pairs = shlex.split(conn)
        except ValueError as exc:
            raise ComponentConfigError(f"connectionString: {exc}") from None
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ComponentConfigError(f"connectionString: {pair!r} is not key=value")
            target = _KEYWORDS.get(key.strip().lower())
            if target is not None:
                args[target] = value
    if "dsn" not in args:
        for name in ("host", "port", "database", "user", "password"):
            field = lookup(md, name)
            if field and name not in args:
                args[name] = field
    if "dsn" not in args and "host" not in args:
        raise ComponentConfigError("metadata connectionString (or host) is required")
    if "port" in args:
        args["port"] = as_int("port", str(args["port"]), 5432)
    args["timeout"] = float(args["timeout"]) if "timeout" in args else min(timeout, 10.0)
    if args.get("ssl") == "disable":
        args["ssl"] = False
    return args


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The pool's per-release reset is a round trip; the store keeps no session state."""


class _Held:
    """The connection of a caller that makes one call at a time (a coalescer's batches).

    With ``keep``, one pooled connection stays checked out between calls: the pool's
    acquire and release per batch cost about a fifth of the runtime's CPU per read. A
    connection that broke goes back to the pool (which discards it) and the next call
    takes another. Without, each call acquires and releases as usual."""

    def __init__(self, keep: bool) -> None:
        self._keep = keep
        self._conn: asyncpg.Connection | None = None

    async def run(
        self,
        pool: asyncpg.Pool,
        timeout: float,
        work: Callable[[asyncpg.Connection], Awaitable[_T]],
    ) -> _T:
        if not self._keep:
            async with pool.acquire(timeout=timeout) as conn:
                return await work(conn)
        return await work(await self._get(pool, timeout))

    async def _get(self, pool: asyncpg.Pool, timeout: float) -> asyncpg.Connection:
        conn = self._conn
        if conn is not None:
            try:
                if not conn.is_closed():
                    return conn
                self._conn = None
                await pool.release(conn)
            except asyncpg.InterfaceError:  # the pool took a lost connection back itself
                self._conn = None
        conn = self._conn = await pool.acquire(timeout=timeout)
        return conn

    async def give_back(self, pool: asyncpg.Pool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(asyncpg.InterfaceError):
                await pool.release(conn)


class PostgresStateStore:
    def __init__(
        self,
        connect: Mapping[str, Any],
        *,
        table: tuple[str, ...] = ("state",),
        metadata_table: tuple[str, ...] = ("dapr_metadata",),
        timeout: float = 20.0,
        cleanup_interval: float = 3600.0,
        max_connections: int = 10,
        idle_lifetime: float = 300.0,
        queryable: bool = True,
        name: str = "postgresql",
    ) -> None:
        self._connect = dict(connect)
        self._t = _quoted(table)
        self._index = f'"{table[-1]}_expires"'  # an index lives in its table's schema
        self._seq = _quoted(table, "_version")
        self._meta = _quoted(metadata_table)
        self._cleanup_key = f"last-cleanup-{'.'.join(table)}"
        self._timeout = timeout
        self._cleanup_interval = cleanup_interval
        self._max_connections = max(1, max_connections)
        self._idle_lifetime = idle_lifetime
        self._queryable = queryable
        self._name = name
        self._pool: asyncpg.Pool | None = None
        self._schema_ready = False
        self._init_lock = asyncio.Lock()
        self._cleanup_task: asyncio.Task[None] | None = None
        self._closed = False
        # Concurrent reads share one statement: under load, one query and one round trip
        # per batch instead of per key (the server's work per read dominated the path).
        self._gets: Coalescer[str, GetResponse] = Coalescer(self._get_many)
        # Likewise last-write upserts (no etag, not first-write): one statement per batch.
        self._sets: Coalescer[SetRequest, None] = Coalescer(self._set_many)
        # The two coalescers keep a connection each, unless that would leave the pool's
        # other callers (transactions, checked writes, queries) fewer than two.
        keep = self._max_connections >= 4
        self._reader, self._writer = _Held(keep), _Held(keep)

    @property
    def features(self) -> frozenset[Feature]:
        base = {Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.KEYS_LIKE}
        return frozenset(base | {Feature.QUERY_API} if self._queryable else base)

    async def get(self, req: GetRequest) -> GetResponse:
        return await self._gets.submit(req.key)

    async def _get_many(self, keys: list[str]) -> list[GetResponse]:
        pool = await self._ready()
        return await self._reader.run(pool, self._timeout, lambda c: self._read_batch(c, keys))

    async def _read_batch(self, conn: asyncpg.Connection, keys: list[str]) -> list[GetResponse]:
        if len(keys) == 1:
            row = await conn.fetchrow(
                f"SELECT value, version FROM {self._t} WHERE key = $1 AND {_LIVE}", keys[0]
            )
            return [GetResponse(None) if row is None else GetResponse(row[0], str(row[1]))]
        found = await self._fetch_keys(conn, keys)
        return [found.get(key) or GetResponse(None) for key in keys]

    async def bulk_get(self, reqs: Sequence[GetRequest], parallelism: int) -> list[BulkGetItem]:
        found = await self._fetch_keys(await self._ready(), [r.key for r in reqs])
        return [BulkGetItem(r.key, found.get(r.key) or GetResponse(None)) for r in reqs]

    async def _fetch_keys(
        self, db: asyncpg.Pool | asyncpg.Connection, keys: list[str]
    ) -> dict[str, GetResponse]:
        """The live rows of ``keys``, in one statement."""
        rows = await db.fetch(
            f"SELECT key, value, version FROM {self._t} WHERE key = ANY($1::text[]) AND {_LIVE}",
            keys,
        )
        return {key: GetResponse(value, str(version)) for key, value, version in rows}

    async def set(self, req: SetRequest) -> None:
        if req.etag is None and not req.insert_only:
            return await self._sets.submit(req)
        _check_etags([req])
        pool = await self._ready()
        async with pool.acquire(timeout=self._timeout) as conn:
            await self._apply(conn, req)

    async def _set_many(self, reqs: list[SetRequest]) -> list[None | BaseException]:
        pool = await self._ready()
        return await self._writer.run(pool, self._timeout, lambda c: self._write_batch(c, reqs))

    async def _write_batch(
        self, conn: asyncpg.Connection, reqs: list[SetRequest]
    ) -> list[None | BaseException]:
        if len(reqs) == 1:
            await self._apply(conn, reqs[0])
            return [None]
        # One row per key: of a key's writes in one batch the last wins, as if each had
        # committed in turn (an upsert cannot touch one row twice in one statement).
        last = {req.key: req for req in reqs}
        try:
            await conn.execute(
                f"INSERT INTO {self._t} (key, value, value_json, version, expires_at) "
                f"SELECT u.key, u.value, u.doc::jsonb, nextval('{self._seq}'), "
                f"{_EXPIRES.format(ttl='u.ttl')} "
                "FROM unnest($1::text[], $2::bytea[], $3::text[], $4::int[]) "
                "AS u(key, value, doc, ttl) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                "value_json = EXCLUDED.value_json, version = EXCLUDED.version, "
                "expires_at = EXCLUDED.expires_at, updated_at = now()",
                list(last),
                [req.value for req in last.values()],
                [self._document(req) for req in last.values()],
                [_ttl(req) for req in last.values()],
            )
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError):
            raise  # the database is out of reach: each write alone would fail the same way
        except Exception:
            # One item the database refuses (a key it cannot hold, say) must fail alone,
            # as it would have on its own: the batch goes again one write at a time.
            return [await self._set_one(conn, req) for req in reqs]
        return [None] * len(reqs)

    async def _set_one(self, conn: asyncpg.Connection, req: SetRequest) -> None | BaseException:
        try:
            await self._apply(conn, req)
        except Exception as exc:
            return exc
        return None

    def _document(self, op: SetRequest) -> str | None:
        """The value as text for ``value_json`` when it is a JSON document (v1 only)."""
        return op.value.decode() if self._queryable and json_document(op.value) else None

    async def delete(self, req: DeleteRequest) -> None:
        _check_etags([req])
        pool = await self._ready()
        async with pool.acquire(timeout=self._timeout) as conn:
            await self._apply(conn, req)

    async def transact(
        self, ops: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        _check_etags(ops)
        pool = await self._ready()
        async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
            for op in ops:
                await self._apply(conn, op)

    async def bulk_write(
        self, ops: Sequence[SetRequest | DeleteRequest]
    ) -> list[StoreError | None]:
        results: list[StoreError | None] = [None] * len(ops)
        valid = []
        for index, op in enumerate(ops):
            try:
                _check_etags([op])
            except StoreError as exc:
                results[index] = exc
                continue
            valid.append((index, op))
        pool = await self._ready()
        async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
            for index, op in valid:
                try:
                    await self._apply(conn, op)
                except ETagMismatch as exc:  # its statement matched nothing: no rollback
                    results[index] = exc
        return results

    async def query(self, req: QueryRequest) -> QueryResult:
        if not self._queryable:
            raise RuntimeError("state.postgresql v2 has no query API")
        pool = await self._ready()
        sql, params = postgres_select(self._t, req.query, req.key_prefix)
        rows = await pool.fetch(sql, *params)
        items = tuple(QueryItem(key, value, str(version)) for key, value, version in rows)
        return QueryResult(items, next_token(req.query, len(items)))

    async def purge_expired(self) -> int:
        """Delete expired rows now; returns how many."""
        pool = await self._ready()
        status = await pool.execute(
            f"DELETE FROM {self._t} WHERE expires_at IS NOT NULL AND expires_at <= now()"
        )
        return int(status.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        self._closed = True
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            self._cleanup_task = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                for held in (self._reader, self._writer):  # close() waits for every connection
                    await held.give_back(pool)
                await asyncio.wait_for(pool.close(), timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                pool.terminate()

    # -- internals ------------------------------------------------------------------------

    async def _apply(self, conn: asyncpg.Connection, op: TransactionOperation) -> None:
        t = self._t
        if isinstance(op, DeleteRequest):
            if op.etag is None:
                await conn.execute(f"DELETE FROM {t} WHERE key = $1", op.key)
                return
            hit = await conn.fetchval(
                f"DELETE FROM {t} WHERE key = $1 AND version = $2 AND {_LIVE} RETURNING 1",
                op.key,
                parse_version(op.etag),
            )
            if hit is None:
                raise ETagMismatch(op.key)
            return
        doc = self._document(op)
        ttl = _ttl(op)
        if op.etag is not None:
            hit = await conn.fetchval(
                f"UPDATE {t} SET value = $2, value_json = $3::jsonb, "
                f"version = nextval('{self._seq}'), expires_at = {_EXPIRES.format(ttl='$4')}, "
                f"updated_at = now() WHERE key = $1 AND version = $5 AND {_LIVE} RETURNING 1",
                op.key,
                op.value,
                doc,
                ttl,
                parse_version(op.etag),
            )
            if hit is None:
                raise ETagMismatch(op.key)
            return
        # An insert-only write may replace only an expired row; last-write replaces any.
        guard = f" WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= now()"
        hit = await conn.fetchval(
            f"INSERT INTO {t} (key, value, value_json, version, expires_at) "
            f"VALUES ($1, $2, $3::jsonb, nextval('{self._seq}'), {_EXPIRES.format(ttl='$4')}) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "value_json = EXCLUDED.value_json, version = EXCLUDED.version, "
            "expires_at = EXCLUDED.expires_at, updated_at = now()"
            f"{guard if op.insert_only else ''} RETURNING 1",
            op.key,
            op.value,
            doc,
            ttl,
        )
        if hit is None:
            raise ETagMismatch(op.key)

    async def _ready(self) -> asyncpg.Pool:
        """The pool, with the schema in place; retried by the next call after a failure."""
        if self._closed:
            raise RuntimeError("state store is closed")
        pool = self._pool
        if pool is not None and self._schema_ready:
            return pool
        async with self._init_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    min_size=0,
                    max_size=self._max_connections,
                    max_inactive_connection_lifetime=self._idle_lifetime,
                    command_timeout=self._timeout,
                    reset=_no_reset,
                    **self._connect,
                )
            if not self._schema_ready:
                await self._ensure_schema(self._pool)
                self._schema_ready = True
            if self._cleanup_task is None and self._cleanup_interval > 0:
                self._cleanup_task = asyncio.create_task(self._cleanup_loop())
            return self._pool

    async def _ensure_schema(self, pool: asyncpg.Pool) -> None:
        t = self._t
        async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
            # Sidecars starting together must not race on CREATE ... IF NOT EXISTS.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", t)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (key TEXT NOT NULL PRIMARY KEY, "
                "value BYTEA NOT NULL, value_json JSONB, version BIGINT NOT NULL, "
                "expires_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self._index} "
                f"ON {t} (expires_at) WHERE expires_at IS NOT NULL"
            )
            await conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {self._seq}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._meta} "
                "(key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)"
            )

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                await self._coordinated_cleanup()
            except Exception as exc:  # the database may be down; try again next round
                log.debug("state store %s: cleanup failed: %s", self._name, exc)

    async def _coordinated_cleanup(self) -> None:
        pool = await self._ready()
        async with pool.acquire(timeout=self._timeout) as conn, conn.transaction():
            # Claim this round: only the instance that moves the timestamp sweeps.
            won = await conn.fetchval(
                f"INSERT INTO {self._meta} AS m (key, value) VALUES ($1, now()::text) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value "
                "WHERE m.value::timestamptz <= now() - make_interval(secs => $2::float8) "
                "RETURNING 1",
                self._cleanup_key,
                self._cleanup_interval * 0.9,
            )
            if won:
                await conn.execute(
                    f"DELETE FROM {self._t} WHERE expires_at IS NOT NULL AND expires_at <= now()"
                )


def _ttl(op: SetRequest) -> int:
    """Seconds to live, 0 for never."""
    return op.ttl if op.ttl is not None and op.ttl > 0 else 0


def _check_etags(ops: Sequence[TransactionOperation]) -> None:
    """A malformed etag is a 400 before any round trip."""
    for op in ops:
        if op.etag is not None:
            parse_version(op.etag)
