"""The transactional outbox through the state API: a store with ``outboxPublishPubsub`` /
``outboxPublishTopic`` publishes its upserts exactly when a transaction commits. The
runtime's blocks are wired as `tandem run` wires them, over SQLite files (state and the
embedded broker), so a second wiring over the same files plays a restarted runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from pubsub_helpers import Recorder

from tandem.blocks.outbox import Outbox
from tandem.blocks.pubsub.broker import SubscribeOptions
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.blocks_wiring import Wiring, wire_blocks
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router


class Runtime:
    def __init__(self, wiring: Wiring, api: Dispatcher) -> None:
        self.wiring, self.api = wiring, api

    @property
    def outbox(self) -> Outbox:
        assert self.wiring.outbox is not None
        return self.wiring.outbox

    async def transact(self, *ops: dict[str, Any]) -> ApiResponse:
        body = orjson.dumps({"operations": list(ops)})
        return await self.api(ApiRequest("POST", "/v1.0/state/store/transaction", body=body))

    async def get(self, key: str) -> ApiResponse:
        return await self.api(ApiRequest("GET", f"/v1.0/state/store/{key}"))

    async def listen(self, topic: str = "orders") -> Recorder:
        rec = Recorder()
        assert self.wiring.pubsub is not None
        broker = self.wiring.pubsub.components["pubsub"].broker
        await broker.subscribe(topic, rec, SubscribeOptions(group="test"))
        return rec

    async def until(self, pred: Callable[[Outbox], bool], timeout: float = 10.0) -> None:
        async def reached() -> None:
            while not pred(self.outbox):
                self.outbox.changed.clear()
                await self.outbox.changed.wait()

        await asyncio.wait_for(reached(), timeout)


MakeRuntime = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def make_runtime(tmp_path: Path) -> AsyncIterator[MakeRuntime]:
    started: list[Wiring] = []

    async def make(*, relay: bool = True, **outbox_md: str) -> Runtime:
        store_md = {
            "connectionString": str(tmp_path / "state.db"),
            "outboxPublishPubsub": "pubsub",
            "outboxPublishTopic": "orders",
            **outbox_md,
        }
        pubsub_md = {"connectionString": str(tmp_path / "pubsub.db"), "redeliverInterval": "20ms"}
        specs = [
            ComponentSpec("store", "state.sqlite", metadata=store_md),
            ComponentSpec("pubsub", "pubsub.sqlite", metadata=pubsub_md),
        ]
        router = Router()
        wiring = wire_blocks(router, specs, ComponentContext(app_id="app", home=tmp_path))
        started.append(wiring)
        if relay:
            for start in wiring.starters:
                await start()
        return Runtime(wiring, Dispatcher(router))

    yield make
    for wiring in reversed(started):
        for close in reversed(wiring.closers):
            await close()


def upsert(key: str, value: Any, **kw: Any) -> dict[str, Any]:
    return {"operation": "upsert", "request": {"key": key, "value": value, **kw}}


async def test_committed_transaction_publishes_each_upsert_once_as_a_cloudevent(make_runtime):
    rt = await make_runtime()
    rec = await rt.listen()
    await rt.api(ApiRequest("POST", "/v1.0/state/store", body=b'[{"key":"old","value":1}]'))
    resp = await rt.transact(
        upsert("k1", {"order": 1}),
        upsert("k2", "text"),
        {"operation": "delete", "request": {"key": "old"}},
    )
    assert resp.status == 204, resp.body
    events = [orjson.loads(m.data) for m in await rec.wait_for(2)]
    by_data = {orjson.dumps(e["data"]): e for e in events}
    assert set(by_data) == {b'{"order":1}', b'"text"'}
    # The relay deletes a marker after publishing it; reads do not wait behind writes.
    await rt.until(lambda o: o.published == 2)
    for e in events:
        assert (e["topic"], e["pubsubname"], e["source"]) == ("orders", "pubsub", "app")
        assert e["datacontenttype"] == "application/json"
        assert (await rt.get(f"tandem-outbox-{e['id']}")).status == 204  # marker removed
    assert len(rec.messages) == 2  # deletes are not published


async def test_failed_transaction_publishes_nothing(make_runtime):
    rt = await make_runtime()
    rec = await rt.listen()
    resp = await rt.transact(upsert("k", "v", etag="999"))  # the key does not exist
    assert resp.status == 500
    assert orjson.loads(resp.body)["errorCode"] == "ERR_STATE_TRANSACTION"
    await rt.until(lambda o: o.discarded == 1)
    assert (await rt.get("k")).status == 204
    assert (await rt.transact(upsert("after", "ok"))).status == 204
    [only] = await rec.wait_for(1)
    assert orjson.loads(only.data)["data"] == "ok"
    await rt.until(lambda o: o.published == 1)
    assert len(rec.messages) == 1


async def test_outbox_publish_failure_is_err_publish_outbox_and_nothing_is_stored(
    make_runtime, monkeypatch
):
    rt = await make_runtime()
    assert rt.wiring.pubsub is not None
    broker = rt.wiring.pubsub.components["pubsub"].broker

    async def down(topic: str, data: bytes, metadata: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(broker, "publish", down)
    resp = await rt.transact(upsert("k", "v"))
    assert resp.status == 500
    assert orjson.loads(resp.body)["errorCode"] == "ERR_PUBLISH_OUTBOX"
    assert (await rt.get("k")).status == 204


async def test_projection_is_published_instead_of_the_stored_value(make_runtime):
    rt = await make_runtime()
    rec = await rt.listen()
    resp = await rt.transact(
        upsert("order", {"id": 1, "card": "4111-1111"}),
        upsert("order", {"id": 1}, metadata={"outbox.projection": "true"}),
    )
    assert resp.status == 204, resp.body
    [event] = await rec.wait_for(1)
    assert orjson.loads(event.data)["data"] == {"id": 1}
    stored = await rt.get("order")
    assert orjson.loads(stored.body) == {"id": 1, "card": "4111-1111"}


async def test_intent_of_a_runtime_that_died_after_commit_is_published_after_restart(
    make_runtime,
):
    crashed = await make_runtime(relay=False)  # committed, never relayed
    assert (await crashed.transact(upsert("k", "survives"))).status == 204
    restarted = await make_runtime()
    rec = await restarted.listen()
    [event] = await rec.wait_for(1)
    assert orjson.loads(event.data)["data"] == "survives"


async def test_intent_whose_transaction_never_committed_is_discarded_after_its_timeout(
    make_runtime,
):
    crashed = await make_runtime(relay=False)
    assert (await crashed.transact(upsert("k", "v", etag="999"))).status == 500
    restarted = await make_runtime(outboxMissingStateTimeout="0s")
    rec = await restarted.listen()
    await restarted.until(lambda o: o.discarded == 1)
    assert (await restarted.transact(upsert("next", "ok"))).status == 204
    [event] = await rec.wait_for(1)
    assert orjson.loads(event.data)["data"] == "ok"


def test_outbox_naming_an_unknown_pubsub_fails_at_startup(tmp_path):
    specs = [
        ComponentSpec(
            "store",
            "state.in-memory",
            metadata={"outboxPublishPubsub": "missing", "outboxPublishTopic": "t"},
        )
    ]
    with pytest.raises(ValueError, match="outbox pubsub 'missing'"):
        wire_blocks(Router(), specs, ComponentContext(app_id="app", home=tmp_path))


async def test_closing_right_after_a_commit_publishes_its_events_first(make_runtime):
    """An app that exits right after its transaction: the runtime closes at once, and the
    outbox still publishes the committed events before it lets go."""
    rt = await make_runtime()
    rec = await rt.listen()
    resp = await rt.transact(upsert("k1", 1), upsert("k2", 2))
    assert resp.status == 204, resp.body
    await rt.outbox.close()
    assert rt.outbox.published == 2
    await rec.wait_for(2)
