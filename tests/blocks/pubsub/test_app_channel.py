"""The app channel and app readiness: `/v1.0/healthz` waits for the app (and its
subscriptions), `/v1.0/healthz/outbound` does not; deliveries reach a real HTTP app."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from servers import free_port
from tandem.blocks.errors import DaprError
from tandem.blocks.health import Health
from tandem.blocks.metadata import MetadataService
from tandem.blocks.pubsub.memory import MemoryPubSub
from tandem.blocks.pubsub.service import PublishRequest, PubSubComponent, PubSubService
from tandem.ext_proc.blocks_wiring import Wiring, start_app


async def _until_ready(health: Health, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            health.check()
            return
        except DaprError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)  # polling a readiness flag, with a deadline


async def test_healthz_waits_for_the_app_then_its_subscriptions_deliver(monkeypatch):
    monkeypatch.setenv("APP_API_TOKEN", "tok")
    port = free_port()
    broker = MemoryPubSub(group="app")
    service = PubSubService([PubSubComponent("pubsub", broker, "pubsub.in-memory")], "app")
    health, metadata = Health("app"), MetadataService("app")
    health.mark_ready("components")
    stop = start_app(
        Wiring(pubsub=service),
        app_id="app",
        port=port,
        protocol="http",
        health=health,
        metadata=metadata,
    )
    with pytest.raises(DaprError) as err:
        health.check()
    assert err.value.error_code == "ERR_HEALTH_NOT_READY" and "app" in err.value.message
    health.check_outbound()  # the outbound side does not wait for the app

    got: asyncio.Queue[web.Request] = asyncio.Queue()

    async def subscribe(request: web.Request) -> web.Response:
        return web.json_response([{"pubsubname": "pubsub", "topic": "t", "route": "/t"}])

    async def on_event(request: web.Request) -> web.Response:
        await request.read()
        await got.put(request)
        return web.json_response({"status": "SUCCESS"})

    app = web.Application()
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_post("/t", on_event)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await _until_ready(health)
        assert [(s.topic, s.type) for s in metadata.subscriptions] == [("t", "PROGRAMMATIC")]
        await service.publish(PublishRequest("pubsub", "t", b"hi", traceparent=""))
        request = await asyncio.wait_for(got.get(), 10)
        assert request.headers["content-type"] == "application/cloudevents+json"
        assert request.headers["dapr-api-token"] == "tok"
        assert request.headers["traceparent"].startswith("00-")
    finally:
        await stop()
        await runner.cleanup()
