"""A gRPC app (``--app-protocol grpc``) serving ``AppCallback.OnInvoke`` with the official
SDK's ``dapr.ext.grpc.App``, as Dapr's invocation examples write one.

Usage: python invoke_grpc_receiver.py PORT

- ``my-method``: answers ``INVOKE_RECEIVED`` plus what it saw (the data, content type and the
  caller metadata that matters) as JSON, with response header ``x-receiver: grpc``.
- ``packed``: answers a packed ``google.protobuf.StringValue`` holding the request text.
- ``fail``: raises, which the SDK answers with gRPC UNKNOWN; an unknown method gets
  UNIMPLEMENTED from the SDK.
"""

from __future__ import annotations

import json
import sys

from dapr.clients.grpc._request import InvokeMethodRequest
from dapr.clients.grpc._response import InvokeMethodResponse
from dapr.ext.grpc import App
from google.protobuf import wrappers_pb2

app = App()


@app.method("my-method")
def my_method(request: InvokeMethodRequest) -> InvokeMethodResponse:
    md = dict(request.metadata)
    seen = {
        "reply": "INVOKE_RECEIVED",
        "data": request.text(),
        "content_type": request.content_type,
        "caller": md.get("dapr-caller-app-id"),
        "traceparent": md.get("traceparent"),
        "custom": md.get("x-custom"),
    }
    return InvokeMethodResponse(
        json.dumps(seen).encode(), "application/json", headers=(("x-receiver", "grpc"),)
    )


@app.method("packed")
def packed(request: InvokeMethodRequest) -> wrappers_pb2.StringValue:
    if request.is_proto():
        value = wrappers_pb2.StringValue()
        request.unpack(value)
        return wrappers_pb2.StringValue(value=f"packed:{value.value}")
    return wrappers_pb2.StringValue(value=f"raw:{request.text()}")


@app.method("fail")
def fail(request: InvokeMethodRequest) -> bytes:
    # The SDK turns an exception into gRPC UNKNOWN; Dapr's HTTP callers then see a 500.
    raise ValueError(f"failing as asked: {request.text()}")


if __name__ == "__main__":
    app.run(int(sys.argv[1]))
