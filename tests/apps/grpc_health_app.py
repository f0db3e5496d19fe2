"""A gRPC app served over TLS (``--app-protocol grpcs``) with Dapr's app health check.

Usage: python grpc_health_app.py PORT TOPIC STATE_DIR CERT KEY

- ``ListTopicSubscriptions``: pubsub ``pubsub``, TOPIC, path ``/orders``.
- ``OnTopicEvent``: appends the event data's ``id`` to STATE_DIR/received (one per line).
- ``AppCallbackHealthCheck.HealthCheck``: counts each probe in STATE_DIR/probes; fails
  (UNAVAILABLE) while the file STATE_DIR/unhealthy exists.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc


class App(appcallback_pb2_grpc.AppCallbackServicer):
    def __init__(self, topic: str, state: Path) -> None:
        self.topic = topic
        self.state = state

    def ListTopicSubscriptions(self, request, context):  # noqa: N802 - gRPC name
        sub = appcallback_pb2.TopicSubscription(
            pubsub_name="pubsub",
            topic=self.topic,
            routes=appcallback_pb2.TopicRoutes(default="/orders"),
        )
        return appcallback_pb2.ListTopicSubscriptionsResponse(subscriptions=[sub])

    def OnTopicEvent(self, request, context):  # noqa: N802 - gRPC name
        event_id = json.loads(request.data).get("id")
        with open(self.state / "received", "a", encoding="utf-8") as f:
            f.write(f"{event_id}\n")
        return appcallback_pb2.TopicEventResponse(status=appcallback_pb2.TopicEventResponse.SUCCESS)


class Health(appcallback_pb2_grpc.AppCallbackHealthCheckServicer):
    def __init__(self, state: Path) -> None:
        self.state = state
        self.probes = 0

    def HealthCheck(self, request, context):  # noqa: N802 - gRPC name
        self.probes += 1
        tmp = self.state / "probes.tmp"
        tmp.write_text(str(self.probes))
        tmp.replace(self.state / "probes")
        if (self.state / "unhealthy").exists():
            context.abort(grpc.StatusCode.UNAVAILABLE, "not now")
        return appcallback_pb2.HealthCheckResponse()


def main() -> None:
    port, topic, state = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    key, cert = Path(sys.argv[5]).read_bytes(), Path(sys.argv[4]).read_bytes()
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(App(topic, state), server)
    appcallback_pb2_grpc.add_AppCallbackHealthCheckServicer_to_server(Health(state), server)
    server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
