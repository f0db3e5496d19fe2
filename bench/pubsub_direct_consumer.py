"""The baseline consumer of `bench/pubsub.py`: the broker's client in its own process.

    python bench/pubsub_direct_consumer.py PORT TYPE TOPIC METADATA_JSON HOME

Subscribes to TOPIC with the Tandem component of TYPE (e.g. ``pubsub.redis``) — no
sidecar, no HTTP, no envelope — and records ``[seq, sent ns, arrived ns]`` per message;
``GET /stats`` and ``POST /reset`` answer like `bench/pubsub_app.py`. Ready when
``GET /stats`` answers (the subscription is in place by then).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tandem.blocks.pubsub.broker import Message, Outcome, PubSub, SubscribeOptions
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component


async def main(port: int, type_: str, topic: str, metadata: dict[str, str], home: Path) -> None:
    records: list[list[int]] = []
    seen: set[int] = set()

    async def handle(msg: Message) -> Outcome:
        now = time.time_ns()
        doc = orjson.loads(msg.data)
        records.append([doc["seq"], doc["t"], now])
        seen.add(doc["seq"])
        return Outcome.SUCCESS

    spec = ComponentSpec("pubsub", type_, metadata=metadata)
    broker: PubSub = create_component(spec, ComponentContext(app_id="direct", home=home))  # type: ignore[assignment]
    await broker.subscribe(topic, handle, SubscribeOptions())

    async def stats(request: web.Request) -> web.Response:
        out: dict[str, Any] = {"count": len(seen), "deliveries": len(records)}
        if request.query.get("records", "1") != "0":
            out["records"] = records
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        records.clear()
        seen.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    port, type_, topic, md, home = sys.argv[1:6]
    asyncio.run(main(int(port), type_, topic, json.loads(md), Path(home)))
