"""The greeter's client (written for Tandem): the app's own gRPC stub dials its sidecar's
gRPC port with ``dapr-app-id`` metadata, as Dapr's gRPC proxying quickstart does.

Usage: python invoke_greeter_client.py TARGET_APP_ID NAME
Prints ``Greeting: <reply>``, then ``client done``.
"""

from __future__ import annotations

import os
import sys
import time

import grpc
from google.protobuf import wrappers_pb2


def main() -> int:
    target, name = sys.argv[1], sys.argv[2]
    with grpc.insecure_channel(f"localhost:{os.environ['DAPR_GRPC_PORT']}") as channel:
        say_hello = channel.unary_unary(
            "/helloworld.Greeter/SayHello",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = say_hello(
                    wrappers_pb2.StringValue(value=name),
                    metadata=(("dapr-app-id", target),),
                    timeout=10,
                )
                break
            except grpc.RpcError:
                # The target may not be known to this sidecar yet, as right after `dapr run`.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    print(f"Greeting: {reply.value}", flush=True)
    print("client done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
