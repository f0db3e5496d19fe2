"""A pub/sub subscriber app that speaks gRPC (``--app-protocol grpc``): a plain grpc.aio
``AppCallback`` servicer.

Usage: python grpc_subscriber_app.py PORT RECORD_FILE SUBSCRIPTIONS_JSON

- ``ListTopicSubscriptions`` answers SUBSCRIPTIONS_JSON (Dapr's programmatic JSON shape:
  pubsubname, topic, routes{rules, default}, deadLetterTopic, metadata).
- Every ``OnTopicEvent`` is recorded as one JSON line in RECORD_FILE: path, topic, pubsub,
  id, type, content type, data (parsed when JSON), extensions, the call metadata that
  matters (traceparent, tracestate, pubsubname, dapr-api-token, dapr-app-id) and the answer.
- The answer comes from the event: when its data is an object with ``answers`` (e.g.
  ``["RETRY", "SUCCESS"]``), the n-th delivery of that event id gets the n-th answer (the
  last repeats): ``SUCCESS``/``RETRY``/``DROP`` as the response status, ``UNIMPLEMENTED``
  and ``ERROR`` as a gRPC error. Without ``answers``: SUCCESS.
- Bulk subscriptions (``bulkSubscribe`` in SUBSCRIPTIONS_JSON) get batches through
  ``AppCallback.OnBulkTopicEvent``; with ``BULK_CALLBACK=alpha`` in the environment the app
  serves only the older ``AppCallbackAlpha.OnBulkTopicEventAlpha1``, with ``none`` neither.
  Each entry is recorded like an event (``bulk`` holds the request id, its entry count, the
  entry id and the method) and answered as above; ``ERROR`` fails the whole batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from typing import Any

import grpc
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc
from google.protobuf.json_format import MessageToDict

Status = appcallback_pb2.TopicEventResponse
_MD = ("traceparent", "tracestate", "pubsubname", "dapr-api-token", "dapr-app-id")


def _subscription(item: dict[str, Any]) -> appcallback_pb2.TopicSubscription:
    routes = item.get("routes") or {}
    bulk = item.get("bulkSubscribe") or {}
    return appcallback_pb2.TopicSubscription(
        bulk_subscribe=appcallback_pb2.BulkSubscribeConfig(
            enabled=bool(bulk.get("enabled")),
            max_messages_count=int(bulk.get("maxMessagesCount", 0)),
            max_await_duration_ms=int(bulk.get("maxAwaitDurationMs", 0)),
        ),
        pubsub_name=item["pubsubname"],
        topic=item["topic"],
        metadata=item.get("metadata") or {},
        dead_letter_topic=item.get("deadLetterTopic", ""),
        routes=appcallback_pb2.TopicRoutes(
            rules=[
                appcallback_pb2.TopicRule(match=r["match"], path=r["path"])
                for r in routes.get("rules", [])
            ],
            default=routes.get("default", item.get("route", "")),
        ),
    )


class App(appcallback_pb2_grpc.AppCallbackServicer):
    def __init__(self, record_file: str, subscriptions: list[dict[str, Any]]) -> None:
        self.record_file = record_file
        self.subscriptions = subscriptions
        self.seen: Counter[str] = Counter()

    async def ListTopicSubscriptions(self, request, context):  # noqa: N802 - gRPC name
        return appcallback_pb2.ListTopicSubscriptionsResponse(
            subscriptions=[_subscription(s) for s in self.subscriptions]
        )

    def _answer(self, event: Any, request: Any, context: Any) -> dict[str, Any]:
        """The record line of one event (``event``: a TopicEventRequest or TopicEventCERequest)
        with the answer it gets."""
        try:
            data: Any = json.loads(event.data) if event.data else None
        except ValueError:
            data = event.data.decode("utf-8", "replace")
        answers = ["SUCCESS"]
        if isinstance(data, dict) and isinstance(data.get("answers"), list):
            answers = [str(a) for a in data["answers"]] or answers
        self.seen[event.id] += 1
        answer = answers[min(self.seen[event.id], len(answers)) - 1]
        md = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        return {
            "path": request.path,
            "topic": request.topic,
            "pubsub": request.pubsub_name,
            "id": event.id,
            "type": event.type,
            "content_type": event.data_content_type,
            "data": data,
            "extensions": MessageToDict(event.extensions),
            "metadata": {k: md.get(k, "") for k in _MD},
            "answer": answer,
        }

    async def bulk(self, request, context, method: str):
        lines = []
        for entry in request.entries:
            line = self._answer(entry.cloud_event, request, context)
            line["bulk"] = {
                "id": request.id,
                "count": len(request.entries),
                "entryId": entry.entry_id,
                "method": method,
            }
            lines.append(line)
        await asyncio.to_thread(self._record_all, lines)
        if any(line["answer"] == "ERROR" for line in lines):
            await context.abort(grpc.StatusCode.INTERNAL, "batch failed")
        return appcallback_pb2.TopicEventBulkResponse(
            statuses=[
                appcallback_pb2.TopicEventBulkResponseEntry(
                    entry_id=line["bulk"]["entryId"], status=getattr(Status, line["answer"])
                )
                for line in lines
            ]
        )

    async def OnTopicEvent(self, request, context):  # noqa: N802 - gRPC name
        line = self._answer(request, request, context)
        answer = line["answer"]
        await asyncio.to_thread(self._record, line)
        if answer == "UNIMPLEMENTED":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no handler")
        if answer == "ERROR":
            await context.abort(grpc.StatusCode.INTERNAL, "handler failed")
        return Status(status=getattr(Status, answer))

    def _record(self, line: dict[str, Any]) -> None:
        self._record_all([line])

    def _record_all(self, lines: list[dict[str, Any]]) -> None:
        with open(self.record_file, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))

    async def ListInputBindings(self, request, context):  # noqa: N802 - gRPC name
        return appcallback_pb2.ListInputBindingsResponse()

    async def OnInvoke(self, request, context):  # noqa: N802 - gRPC name
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no invocation here")


class BulkApp(App):
    async def OnBulkTopicEvent(self, request, context):  # noqa: N802 - gRPC name
        return await self.bulk(request, context, "OnBulkTopicEvent")


class AlphaBulk(appcallback_pb2_grpc.AppCallbackAlphaServicer):
    def __init__(self, app: App) -> None:
        self.app = app

    async def OnBulkTopicEventAlpha1(self, request, context):  # noqa: N802 - gRPC name
        return await self.app.bulk(request, context, "OnBulkTopicEventAlpha1")


def add_to_server(server: grpc.aio.Server, record_file: str, subs: list[dict[str, Any]]) -> App:
    """The app's servicers on ``server``, the bulk ones as ``BULK_CALLBACK`` says."""
    mode = os.environ.get("BULK_CALLBACK", "bulk")
    app = BulkApp(record_file, subs) if mode == "bulk" else App(record_file, subs)
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(app, server)
    if mode == "alpha":
        appcallback_pb2_grpc.add_AppCallbackAlphaServicer_to_server(AlphaBulk(app), server)
    return app


async def serve(port: int, record_file: str, subscriptions: list[dict[str, Any]]) -> None:
    server = grpc.aio.server()
    add_to_server(server, record_file, subscriptions)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    port, record_file, subs = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    asyncio.run(serve(port, record_file, subs))
