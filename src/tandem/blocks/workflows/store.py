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
from tandem.blocks.state.store import DeleteRequest, SetRequest, TransactionOperation
from tandem.blocks.workflows.record import Record, decode, encode

RECORD_KEY = "state"
INDEX_KEY = "index"


def workflow_actor_type(namespace: str, app_id: str) -> str:
    return f"dapr.internal.{namespace or 'default'}.{app_id}.workflow"


class WorkflowStore:
    """Commits are grouped: saves that arrive while one transaction runs go together in the
    next (one transaction, one sync to disk), each caller resumed once its write is durable.
    Within a group the last write of a key wins; the index is written once, as it is then."""

    def __init__(self, state: ActorState, actor_type: str) -> None:
        self._state = state
        self._type = actor_type
        self.index: dict[str, list[Any]] = {}
        self._pending: list[tuple[list[TransactionOperation], bool, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def load_index(self) -> dict[str, list[Any]]:
        got = await self._state.get(self._type, "", INDEX_KEY)
        self.index = dict(orjson.loads(got)) if got else {}
        return self.index

    async def load(self, instance_id: str) -> Record | None:
        got = await self._state.get(self._type, instance_id, RECORD_KEY)
        return decode(got) if got else None

    async def save(self, rec: Record, *, index: bool) -> None:
        """Commit ``rec``; with ``index``, its index entry in the same transaction."""
        op = SetRequest(self._state.key(self._type, rec.instance_id, RECORD_KEY), encode(rec))
        if index:
            self.index[rec.instance_id] = rec.index_entry()
        await self._commit([op], index)

    async def delete(self, instance_ids: list[str]) -> None:
        ops: list[TransactionOperation] = [
            DeleteRequest(self._state.key(self._type, i, RECORD_KEY)) for i in instance_ids
        ]
        for i in instance_ids:
            self.index.pop(i, None)
        await self._commit(ops, True)

    async def _commit(self, ops: list[TransactionOperation], index: bool) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, index, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            by_key: dict[str, TransactionOperation] = {}
            for ops, _, _ in group:
                for op in ops:
                    by_key.pop(op.key, None)  # keep the order of the last writes
                    by_key[op.key] = op
            if any(index for _, index, _ in group):
                index_op = self._index_op()
                by_key[index_op.key] = index_op
            try:
                await self._state.component.store.transact(list(by_key.values()), {})
            except Exception as exc:
                for _, _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, _, done in group:
                if not done.done():
                    done.set_result(None)

    def _index_op(self) -> SetRequest:
        return SetRequest(self._state.key(self._type, "", INDEX_KEY), orjson.dumps(self.index))
