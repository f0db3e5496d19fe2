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
"""

from __future__ import annotations

import asyncio
import json
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
    return appcallback_pb2.TopicSubscription(
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

    async def OnTopicEvent(self, request, context):  # noqa: N802 - gRPC name
        try:
            data: Any = json.loads(request.data) if request.data else None
        except ValueError:
            data = request.data.decode("utf-8", "replace")
        answers = ["SUCCESS"]
        if isinstance(data, dict) and isinstance(data.get("answers"), list):
            answers = [str(a) for a in data["answers"]] or answers
        self.seen[request.id] += 1
        answer = answers[min(self.seen[request.id], len(answers)) - 1]
        md = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        line = {
            "path": request.path,
            "topic": request.topic,
            "pubsub": request.pubsub_name,
            "id": request.id,
            "type": request.type,
            "content_type": request.data_content_type,
            "data": data,
            "extensions": MessageToDict(request.extensions),
            "metadata": {k: md.get(k, "") for k in _MD},
            "answer": answer,
        }
        await asyncio.to_thread(self._record, line)
        if answer == "UNIMPLEMENTED":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no handler")
        if answer == "ERROR":
            await context.abort(grpc.StatusCode.INTERNAL, "handler failed")
        return Status(status=getattr(Status, answer))

    def _record(self, line: dict[str, Any]) -> None:
        with open(self.record_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    async def ListInputBindings(self, request, context):  # noqa: N802 - gRPC name
        return appcallback_pb2.ListInputBindingsResponse()

    async def OnInvoke(self, request, context):  # noqa: N802 - gRPC name
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "no invocation here")


async def serve(port: int, record_file: str, subscriptions: list[dict[str, Any]]) -> None:
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(App(record_file, subscriptions), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    port, record_file, subs = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    asyncio.run(serve(port, record_file, subs))
