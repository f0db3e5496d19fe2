"""The subscriber app of the pub/sub benchmarks: records when each event arrives.

    python bench/pubsub_app.py PORT PUBSUB TOPIC [--record FILE] [--bulk N]

- ``GET /dapr/subscribe``: one subscription, PUBSUB/TOPIC → ``/events``; with ``--bulk``
  a bulk subscription (``maxMessagesCount`` N, ``maxAwaitDurationMs`` 5), each entry
  recorded as one event and answered SUCCESS.
- ``POST /events``: the event's data is ``{"seq": n, "t": <publish time, ns>}``; the app
  keeps ``[seq, t, receive time ns]`` and answers 200 (SUCCESS). With ``--record`` each
  line also goes to FILE (line-buffered, so what the app acknowledged survives a restart).
- ``GET /stats``: ``{"count": distinct seqs, "deliveries": n, "records": [...]}`` —
  ``?records=0`` leaves the records out. ``POST /reset`` forgets everything.

Times are ``time.time_ns()``: the publisher and this app run on one machine.

The app is what a benchmark app should be, as cheap as `_common.FAST_APP`: an asyncio
protocol on uvloop with the `httptools` parser, no web framework. What it costs is the
app's, not Tandem's; until 2026-11-30 it was an aiohttp app on asyncio's own loop, which
spent ~0.1 ms of CPU per delivery (BENCHMARKS.md, "Pub/sub, fourth pass").
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import IO, Any

import httptools
import orjson
import uvloop

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
_NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


def _json(doc: Any) -> bytes:
    body = orjson.dumps(doc)
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Recorder:
    def __init__(self, pubsub: str, topic: str, record: IO[str] | None, bulk: int = 0) -> None:
        self.records: list[list[int]] = []
        self.seen: set[int] = set()
        self.record = record
        sub: dict[str, Any] = {"pubsubname": pubsub, "topic": topic, "route": "/events"}
        if bulk:
            sub["bulkSubscribe"] = {
                "enabled": True,
                "maxMessagesCount": bulk,
                "maxAwaitDurationMs": 5,
            }
        self.subscribe = _json([sub])

    def _keep(self, event: Any, now: int) -> None:
        data = event.get("data") or {}
        row = [int(data.get("seq", -1)), int(data.get("t", 0)), now]
        self.records.append(row)
        self.seen.add(row[0])
        if self.record is not None:
            self.record.write(orjson.dumps(row).decode() + "\n")

    def answer(self, method: bytes, url: bytes, body: bytes) -> bytes:
        path, _, query = url.partition(b"?")
        if method == b"POST" and path == b"/events":
            now = time.time_ns()
            doc = orjson.loads(body)
            entries = doc.get("entries")
            if entries is None:
                self._keep(doc, now)
                return _OK
            for entry in entries:  # a bulk delivery
                self._keep(entry["event"], now)
            statuses = [{"entryId": e["entryId"], "status": "SUCCESS"} for e in entries]
            return _json({"statuses": statuses})
        if method == b"GET" and path == b"/stats":
            out: dict[str, Any] = {"count": len(self.seen), "deliveries": len(self.records)}
            if b"records=0" not in query:
                out["records"] = self.records
            return _json(out)
        if method == b"POST" and path == b"/reset":
            self.records.clear()
            self.seen.clear()
            return _NO_CONTENT
        if method == b"GET" and path == b"/dapr/subscribe":
            return self.subscribe
        return _NOT_FOUND


class Connection(asyncio.Protocol):
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer = self._recorder.answer(self._parser.get_method(), self._url, b"".join(self._body))
        self._url = b""
        self._body = []
        assert self._transport is not None
        self._transport.write(answer)


async def serve(port: int, recorder: Recorder) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(recorder), "127.0.0.1", port)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("pubsub")
    parser.add_argument("topic")
    parser.add_argument("--record")
    parser.add_argument("--bulk", type=int, default=0)
    args = parser.parse_args()
    record = open(args.record, "a", buffering=1) if args.record else None  # noqa: SIM115
    uvloop.run(serve(args.port, Recorder(args.pubsub, args.topic, record, args.bulk)))


if __name__ == "__main__":
    main()
