"""The workflow store's shared instance index: every replica of an app writes it, and no
replica's entries are lost to another's write (two stores on one SQLite file, as two
sidecars on the embedded store); an index written before stamps is kept and carried on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from tandem.blocks.actors.state import ActorState
from tandem.blocks.state.keys import KeyScheme
from tandem.blocks.state.service import StateComponent
from tandem.blocks.state.sqlite import SqliteStateStore
from tandem.blocks.state.store import SetRequest
from tandem.blocks.workflows.record import RUNNING, Record, now
from tandem.blocks.workflows.store import INDEX_KEY, WorkflowStore

TYPE = "dapr.internal.default.app.workflow"


def _store(path: Path) -> tuple[WorkflowStore, ActorState, SqliteStateStore]:
    sqlite = SqliteStateStore(str(path))
    component = StateComponent("statestore", sqlite, KeyScheme("statestore", None))
    state = ActorState("app", {"statestore": component}, "statestore")
    return WorkflowStore(state, TYPE), state, sqlite


def _record(instance_id: str) -> Record:
    at = now()
    return Record(instance_id, "wf", RUNNING, at, at, "e1")


def test_two_replicas_writing_the_index_lose_no_entry(tmp_path: Path) -> None:
    async def scenario() -> None:
        (a, _, sa), (b, _, sb) = _store(tmp_path / "s.db"), _store(tmp_path / "s.db")
        try:
            await asyncio.gather(
                *(a.save(_record(f"a{i}"), index=True) for i in range(30)),
                *(b.save(_record(f"b{i}"), index=True) for i in range(30)),
            )
            await b.delete(["a3"])
            await a.save(_record("a-last"), index=True)
            index = await a.load_index()
            expected = {f"a{i}" for i in range(30)} - {"a3"} | {f"b{i}" for i in range(30)}
            assert set(index) == expected | {"a-last"}
            assert set(await b.load_index()) == set(index)
        finally:
            await sa.close()
            await sb.close()

    asyncio.run(scenario())


def test_an_index_written_before_stamps_is_carried_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, state, sqlite = _store(tmp_path / "s.db")
        try:
            old = {"old": ["wf", "COMPLETED", now().isoformat(), now().isoformat(), 0]}
            key = state.key(TYPE, "", INDEX_KEY)
            await sqlite.set(SetRequest(key, orjson.dumps(old)))
            assert set(await store.load_index()) == {"old"}
            await store.save(_record("new"), index=True)
            assert set(await store.load_index()) == {"old", "new"}
        finally:
            await sqlite.close()

    asyncio.run(scenario())
