"""Workflow records in the actor state store, under Dapr's internal actor type for workflows
(``<appId>||dapr.internal.<ns>.<appId>.workflow||<instanceId>||state``).

An index of the app's instances (name, status, creation time) sits beside them under an
id no instance can have (the empty one): listing and take-over read it instead of scanning
the store. A record and its index change commit in one transaction.

Each record has one writer (its owner in placement), but every replica of the app writes
the one index. So index writes compare-and-set against the version read just before, and
the value starts with a stamp line naming its writer: when the stamp is this store's last
one, nobody else wrote and the cached index is current; otherwise the stored one is read
and this group's changes are applied to it. A lost race (the etag moved between the read
and the write) fails the whole transaction, which is retried the same way. An index
written before stamps (plain JSON) is read as it is and stamped at the next write.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import orjson

from tandem.blocks.actors.state import ActorState
from tandem.blocks.state.store import (
    Concurrency,
    DeleteRequest,
    ETagMismatch,
    GetRequest,
    SetRequest,
    TransactionOperation,
)
from tandem.blocks.workflows.record import Record, decode, encode

RECORD_KEY = "state"
INDEX_KEY = "index"
Entry = list[Any]
# instance id -> its new index entry, or None: gone
Changes = dict[str, Entry | None]


def workflow_actor_type(namespace: str, app_id: str) -> str:
    return f"dapr.internal.{namespace or 'default'}.{app_id}.workflow"


def parse_index(data: bytes | None) -> dict[str, Entry]:
    """A stored index: a stamp line and JSON, or JSON alone (written before stamps)."""
    if not data:
        return {}
    if not data.startswith(b"{"):
        data = data.partition(b"\n")[2]
    return dict(orjson.loads(data))


class WorkflowStore:
    """Commits are grouped: saves that arrive while one transaction runs go together in the
    next (one transaction, one sync to disk), each caller resumed once its write is durable.
    Within a group the last write of a key wins; the index is written once, as it is then."""

    def __init__(self, state: ActorState, actor_type: str) -> None:
        self._state = state
        self._type = actor_type
        self._index: dict[str, Entry] = {}  # as last written here
        self._writer = uuid.uuid4().hex
        self._writes = itertools.count(1)
        self._stamp = b""  # of the last index this store wrote
        self._pending: list[tuple[list[TransactionOperation], Changes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def load_index(self) -> dict[str, Entry]:
        """Every replica's instances, as committed."""
        got = await self._state.get(self._type, "", INDEX_KEY)
        return parse_index(got)

    async def load(self, instance_id: str) -> Record | None:
        got = await self._state.get(self._type, instance_id, RECORD_KEY)
        return decode(got) if got else None

    async def save(self, rec: Record, *, index: bool) -> None:
        """Commit ``rec``; with ``index``, its index entry in the same transaction."""
        op = SetRequest(self._state.key(self._type, rec.instance_id, RECORD_KEY), encode(rec))
        await self._commit([op], {rec.instance_id: rec.index_entry()} if index else {})

    async def delete(self, instance_ids: list[str]) -> None:
        ops: list[TransactionOperation] = [
            DeleteRequest(self._state.key(self._type, i, RECORD_KEY)) for i in instance_ids
        ]
        await self._commit(ops, dict.fromkeys(instance_ids))

    async def _commit(self, ops: list[TransactionOperation], changes: Changes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, changes, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            by_key: dict[str, TransactionOperation] = {}
            changes: Changes = {}
            for ops, changed, _ in group:
                changes.update(changed)
                for op in ops:
                    by_key.pop(op.key, None)  # keep the order of the last writes
                    by_key[op.key] = op
            try:
                while True:
                    index_op = await self._index_op(changes) if changes else None
                    writes = list(by_key.values())
                    if index_op is not None:
                        writes.append(index_op)
                    try:
                        await self._state.component.store.transact(writes, {})
                        break
                    except ETagMismatch:
                        continue  # another replica wrote the index meanwhile: again
            except Exception as exc:
                for _, _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, _, done in group:
                if not done.done():
                    done.set_result(None)

    async def _index_op(self, changes: Changes) -> SetRequest:
        """The index with ``changes``, to be written only over the version just read."""
        key = self._state.key(self._type, "", INDEX_KEY)
        got = await self._state.component.store.get(GetRequest(key))
        if got.data is None:
            index: dict[str, Entry] = {}
        elif self._stamp and got.data.startswith(self._stamp):
            index = self._index  # ours: nobody wrote since
        else:
            index = parse_index(got.data)
        for instance_id, entry in changes.items():
            if entry is None:
                index.pop(instance_id, None)
            else:
                index[instance_id] = entry
        self._index = index
        self._stamp = f"{self._writer}:{next(self._writes)}\n".encode()
        value = self._stamp + orjson.dumps(index)
        if got.data is None:  # nobody may create it meanwhile
            return SetRequest(key, value, concurrency=Concurrency.FIRST_WRITE)
        return SetRequest(key, value, etag=got.etag)
