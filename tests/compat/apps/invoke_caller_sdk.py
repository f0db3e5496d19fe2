"""A caller using the official SDK's ``DaprClient().invoke_method`` (written for Tandem, in
the shape of the python-sdk's invocation examples), first over HTTP (the SDK's default),
then over gRPC (``DAPR_API_METHOD_INVOCATION_PROTOCOL=grpc``, Dapr's ``InvokeService``).

Usage: python invoke_caller_sdk.py TARGET_APP_ID METHOD
Prints ``<protocol>: <content type> <text>`` per call, then ``caller done``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

from dapr.clients import DaprClient


def call(client: DaprClient, target: str, method: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            resp = client.invoke_method(
                target, method, data=json.dumps({"id": 1}), http_verb="POST"
            )
            return f"{resp.content_type} {resp.text()}"
        except Exception:
            # The target may not be known to this sidecar yet, as right after `dapr run`.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main() -> int:
    target, method = sys.argv[1], sys.argv[2]
    warnings.simplefilter("ignore", DeprecationWarning)  # gRPC invoke_method is deprecated
    for protocol in ("http", "grpc"):
        os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = protocol
        with DaprClient() as client:
            print(f"{protocol}: {call(client, target, method)}", flush=True)
    print("caller done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
