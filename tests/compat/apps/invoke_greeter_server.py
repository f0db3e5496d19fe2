"""A helloworld-style gRPC service (written for Tandem), reached through gRPC proxying:
``helloworld.Greeter/SayHello`` takes and returns a ``google.protobuf.StringValue``, so it
needs no generated code.

Usage: python invoke_greeter_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from google.protobuf import wrappers_pb2

SERVICE = "helloworld.Greeter"


async def say_hello(
    request: wrappers_pb2.StringValue, context: grpc.aio.ServicerContext
) -> wrappers_pb2.StringValue:
    caller = dict(context.invocation_metadata() or ()).get("dapr-caller-app-id", "?")
    return wrappers_pb2.StringValue(value=f"Hello {request.value} (from {caller})")


async def main(port: int) -> None:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        say_hello,
        request_deserializer=wrappers_pb2.StringValue.FromString,
        response_serializer=wrappers_pb2.StringValue.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"SayHello": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
