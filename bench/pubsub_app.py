"""The subscriber app of the pub/sub benchmarks: records when each event arrives.

    python bench/pubsub_app.py PORT PUBSUB TOPIC [--record FILE]

- ``GET /dapr/subscribe``: one subscription, PUBSUB/TOPIC → ``/events``.
- ``POST /events``: the event's data is ``{"seq": n, "t": <publish time, ns>}``; the app
  keeps ``[seq, t, receive time ns]`` and answers 200 (SUCCESS). With ``--record`` each
  line also goes to FILE (line-buffered, so what the app acknowledged survives a restart).
- ``GET /stats``: ``{"count": distinct seqs, "deliveries": n, "records": [...]}`` —
  ``?records=0`` leaves the records out. ``POST /reset`` forgets everything.

Times are ``time.time_ns()``: the publisher and this app run on one machine.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import orjson
from aiohttp import web


def make_app(pubsub: str, topic: str, record: Any) -> web.Application:
    records: list[list[int]] = []
    seen: set[int] = set()

    async def subscribe(request: web.Request) -> web.Response:
        return web.json_response([{"pubsubname": pubsub, "topic": topic, "route": "/events"}])

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time_ns()
        data = orjson.loads(body).get("data") or {}
        row = [int(data.get("seq", -1)), int(data.get("t", 0)), now]
        records.append(row)
        seen.add(row[0])
        if record is not None:
            record.write(json.dumps(row) + "\n")
        return web.Response(status=200)

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
    app.router.add_get("/dapr/subscribe", subscribe)
    app.router.add_post("/events", events)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("pubsub")
    parser.add_argument("topic")
    parser.add_argument("--record")
    args = parser.parse_args()
    record = open(args.record, "a", buffering=1) if args.record else None  # noqa: SIM115
    web.run_app(
        make_app(args.pubsub, args.topic, record),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
