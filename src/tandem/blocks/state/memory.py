"""``state.in-memory``: state held in the runtime process, gone when it stops.

Every operation runs to completion without awaiting, so on the event loop it is atomic:
a check-and-set or a whole transaction can't interleave with another request. Etags are
versions from one counter, so a re-created key never repeats one. Expired entries are
invisible at once and dropped by a periodic sweep. Queries are evaluated in Python by
:mod:`.query` over the decoded JSON of each value (decoded once, then kept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tandem.blocks.component_metadata import as_seconds, lookup
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.query import (
    NOT_JSON,
    QueryItem,
    QueryRequest,
    QueryResult,
    json_document,
    matches,
    next_token,
    sort_key,
)
from tandem.blocks.state.store import (
    BulkGetItem,
    DeleteRequest,
    ETagMismatch,
    Feature,
    GetRequest,
    GetResponse,
    SetRequest,
    TransactionOperation,
    parse_version,
)

_UNDECODED = object()


def create(spec: ComponentSpec, ctx: ComponentContext) -> MemoryStateStore:
    interval = as_seconds("cleanupInterval", lookup(spec.metadata, "cleanupInterval"), 10.0)
    return MemoryStateStore(cleanup_interval=interval)


@dataclass(slots=True)
class _Entry:
    value: bytes
    version: int
    expires_at: float | None  # time.monotonic() deadline
    doc: Any = field(default=_UNDECODED)  # decoded JSON, filled by the first query

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def document(self) -> Any:
        if self.doc is _UNDECODED:
            self.doc = orjson.loads(self.value) if json_document(self.value) else NOT_JSON
        return self.doc


class MemoryStateStore:
    def __init__(self, *, cleanup_interval: float = 10.0) -> None:
        self._items: dict[str, _Entry] = {}
        self._seq = 0
        self._cleanup_interval = cleanup_interval
        self._cleanup_task: asyncio.Task[None] | None = None

    @property
    def features(self) -> frozenset[Feature]:
        # Dapr's list, plus the query API that this store adds.
        return frozenset(
            {
                Feature.ETAG,
                Feature.TRANSACTIONAL,
                Feature.TTL,
                Feature.DELETE_WITH_PREFIX,
                Feature.KEYS_LIKE,
                Feature.QUERY_API,
            }
        )

    async def get(self, req: GetRequest) -> GetResponse:
        self._start_cleanup()
        entry = self._live(req.key, time.monotonic())
        return GetResponse(None) if entry is None else GetResponse(entry.value, str(entry.version))

    async def bulk_get(self, reqs: Sequence[GetRequest], parallelism: int) -> list[BulkGetItem]:
        self._start_cleanup()
        now = time.monotonic()
        items = []
        for r in reqs:
            entry = self._live(r.key, now)
            resp = (
                GetResponse(None) if entry is None else GetResponse(entry.value, str(entry.version))
            )
            items.append(BulkGetItem(r.key, resp))
        return items

    async def set(self, req: SetRequest) -> None:
        self._apply_all([req])

    async def delete(self, req: DeleteRequest) -> None:
        self._apply_all([req])

    async def transact(
        self, ops: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        self._apply_all(ops)

    async def query(self, req: QueryRequest) -> QueryResult:
        self._start_cleanup()
        now = time.monotonic()
        q = req.query
        prefix = req.key_prefix
        found = []
        for key, entry in self._items.items():
            if (prefix is not None and not key.startswith(prefix)) or not entry.live(now):
                continue
            doc = entry.document()
            if q.filter is not None and (doc is NOT_JSON or not matches(q.filter, doc)):
                continue
            found.append((sort_key(q.sort, key, doc), key, entry))
        found.sort(key=lambda row: row[0])
        page = found[q.offset : q.offset + q.limit] if q.limit else found[q.offset :]
        items = tuple(QueryItem(key, e.value, str(e.version)) for _, key, e in page)
        return QueryResult(items, next_token(q, len(items)))

    async def close(self) -> None:
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            self._cleanup_task = None
        self._items.clear()

    def purge_expired(self) -> int:
        now = time.monotonic()
        expired = [k for k, e in self._items.items() if not e.live(now)]
        for key in expired:
            del self._items[key]
        return len(expired)

    # -- internals ------------------------------------------------------------------------

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._items.get(key)
        return entry if entry is not None and entry.live(now) else None

    def _apply_all(self, ops: Sequence[TransactionOperation]) -> None:
        """Check every operation against the state the earlier ones leave, then write."""
        self._start_cleanup()
        for op in ops:  # a malformed etag is a 400 even when the key is missing
            if op.etag is not None:
                parse_version(op.etag)
        now = time.monotonic()
        staged: dict[str, _Entry | None] = {}
        seq = self._seq
        for op in ops:
            current = staged[op.key] if op.key in staged else self._live(op.key, now)
            if op.etag is not None:
                if current is None or current.version != parse_version(op.etag):
                    raise ETagMismatch(op.key)
            elif isinstance(op, SetRequest) and op.insert_only and current is not None:
                raise ETagMismatch(op.key)
            if isinstance(op, DeleteRequest):
                staged[op.key] = None
                continue
            seq += 1
            expires = now + op.ttl if op.ttl is not None and op.ttl > 0 else None
            staged[op.key] = _Entry(op.value, seq, expires)
        self._seq = seq
        for key, entry in staged.items():
            if entry is None:
                self._items.pop(key, None)
            else:
                self._items[key] = entry

    def _start_cleanup(self) -> None:
        if self._cleanup_task is None and self._cleanup_interval > 0:
            self._cleanup_task = asyncio.get_running_loop().create_task(self._cleanup_loop())

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            self.purge_expired()
