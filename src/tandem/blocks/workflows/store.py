"""Workflow records in the actor state store, under Dapr's internal actor type for workflows
(``<appId>||dapr.internal.<ns>.<appId>.workflow||<instanceId>||state``).

An index of the app's instances (name, status, creation time) sits beside them under an
id no instance can have (the empty one): listing and recovery read it instead of scanning
the store. A record and its index change commit in one transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tandem.blocks.actors.state import ActorState
from tandem.blocks.state.store import DeleteRequest, GetRequest, SetRequest, TransactionOperation
from tandem.blocks.workflows.record import Record, decode, encode

RECORD_KEY = "state"
INDEX_KEY = "index"


def workflow_actor_type(namespace: str, app_id: str) -> str:
    return f"dapr.internal.{namespace or 'default'}.{app_id}.workflow"


class WorkflowStore:
    def __init__(self, state: ActorState, actor_type: str) -> None:
        self._state = state
        self._type = actor_type
        # Index writes carry the whole index: one at a time, so none overwrites a newer one.
        self._index_lock = asyncio.Lock()
        self.index: dict[str, list[Any]] = {}

    async def load_index(self) -> dict[str, list[Any]]:
        got = await self._state.get(self._type, "", INDEX_KEY)
        self.index = dict(orjson.loads(got)) if got else {}
        return self.index

    async def load(self, instance_id: str) -> Record | None:
        got = await self._state.get(self._type, instance_id, RECORD_KEY)
        return decode(got) if got else None

    async def save(self, rec: Record, *, index: bool) -> None:
        """Commit ``rec``; with ``index``, its index entry in the same transaction."""
        op: TransactionOperation = SetRequest(
            self._state.key(self._type, rec.instance_id, RECORD_KEY), encode(rec)
        )
        if not index:
            await self._state.component.store.transact([op], {})
            return
        async with self._index_lock:
            self.index[rec.instance_id] = rec.index_entry()
            await self._state.component.store.transact([op, self._index_op()], {})

    async def delete(self, instance_ids: list[str]) -> None:
        ops: list[TransactionOperation] = [
            DeleteRequest(self._state.key(self._type, i, RECORD_KEY)) for i in instance_ids
        ]
        async with self._index_lock:
            for i in instance_ids:
                self.index.pop(i, None)
            ops.append(self._index_op())
            await self._state.component.store.transact(ops, {})

    def _index_op(self) -> SetRequest:
        return SetRequest(self._state.key(self._type, "", INDEX_KEY), orjson.dumps(self.index))

    async def exists(self, instance_id: str) -> bool:
        got = await self._state.component.store.get(
            GetRequest(self._state.key(self._type, instance_id, RECORD_KEY))
        )
        return got.data is not None
