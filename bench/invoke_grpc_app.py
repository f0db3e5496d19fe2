"""The cost of the one invocation that passes through the runtime: HTTP -> gRPC app
(``OnInvoke``) and the SDK's gRPC ``InvokeService``, against plain HTTP -> HTTP, in one run.

    python bench/invoke_grpc_app.py [--seconds 5] [--connections 1]

Three sidecars: a caller, an HTTP app and a gRPC app (both answer a fixed small reply as
fast as Python can). wrk measures HTTP -> HTTP (Envoy only, the baseline) and HTTP -> gRPC
app (the callee's runtime translates); the official SDK's ``DaprClient().invoke_method`` in
a loop measures its HTTP default (the SDK baseline) against ``InvokeService`` (gRPC) to both
apps. Ratios are to the baseline of the same client.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

from _common import TandemMachine, start_fast_app, wait_http, wrk

from tandem.cli.ports import free_port

FAST_GRPC_APP = r"""
import asyncio, sys
import grpc
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import appcallback_pb2_grpc
from google.protobuf import any_pb2
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
REPLY = common_pb2.InvokeResponse(data=any_pb2.Any(value=b'{"ok":true}'),
                                  content_type="application/json")
class App(appcallback_pb2_grpc.AppCallbackServicer):
    async def OnInvoke(self, request, context):
        return REPLY
async def main():
    server = grpc.aio.server()
    appcallback_pb2_grpc.add_AppCallbackServicer_to_server(App(), server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


@dataclass(frozen=True)
class LoopResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float


def sdk_loop(name: str, target: str, protocol: str, seconds: int) -> LoopResult:
    """One SDK client calling ``invoke_method`` back to back for ``seconds``."""
    from dapr.clients import DaprClient

    os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = protocol
    samples: list[float] = []
    with warnings.catch_warnings(), DaprClient() as client:
        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(50):  # warm up connections on every hop
            client.invoke_method(target, "x", data=b"{}", http_verb="POST")
        end = time.perf_counter() + seconds
        while (now := time.perf_counter()) < end:
            client.invoke_method(target, "x", data=b"{}", http_verb="POST")
            samples.append(time.perf_counter() - now)
    samples.sort()
    return LoopResult(
        name,
        len(samples) / seconds,
        statistics.median(samples) * 1000,
        samples[int(len(samples) * 0.99)] * 1000,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    a = ap.parse_args()
    http_app, http_port = start_fast_app()
    grpc_port = free_port()
    grpc_app = subprocess.Popen([sys.executable, "-c", FAST_GRPC_APP, str(grpc_port)])
    try:
        with TandemMachine() as m:
            m.run("bench-h", "--app-port", str(http_port))
            m.run("bench-g", "--app-port", str(grpc_port), "--app-protocol", "grpc")
            caller = m.run_sidecar("bench-a")
            base = f"http://127.0.0.1:{caller.http}/v1.0/invoke"
            for target in ("bench-h", "bench-g"):
                wait_http(f"{base}/{target}/method/x", 200)
            wrk_results = [
                wrk(
                    "HTTP -> HTTP app (Envoy only)",
                    f"{base}/bench-h/method/x",
                    connections=a.connections,
                    seconds=a.seconds,
                ),
                wrk(
                    "HTTP -> gRPC app (OnInvoke)",
                    f"{base}/bench-g/method/x",
                    connections=a.connections,
                    seconds=a.seconds,
                ),
            ]
            os.environ["DAPR_HTTP_PORT"] = str(caller.http)
            os.environ["DAPR_GRPC_PORT"] = str(caller.grpc)
            sdk_results = [
                sdk_loop("SDK HTTP invoke -> HTTP app", "bench-h", "http", a.seconds),
                sdk_loop("SDK gRPC InvokeService -> HTTP app", "bench-h", "grpc", a.seconds),
                sdk_loop("SDK gRPC InvokeService -> gRPC app", "bench-g", "grpc", a.seconds),
            ]
    finally:
        http_app.terminate()
        grpc_app.terminate()

    print(f"\nwrk, connections={a.connections}, seconds={a.seconds}\n")
    print("| path | req/s | p50 ms | p90 ms | p99 ms | req/s vs baseline | added p50 ms |")
    print("|---|---|---|---|---|---|---|")
    base_wrk = wrk_results[0]
    for r in wrk_results:
        print(f"{r.row()} {r.rps / base_wrk.rps:.2f}x | {r.p50_ms - base_wrk.p50_ms:+.3f} |")
    print(f"\nofficial SDK, one client, sequential calls, seconds={a.seconds}\n")
    print("| path | req/s | p50 ms | p99 ms | req/s vs baseline | added p50 ms |")
    print("|---|---|---|---|---|---|")
    base_sdk = sdk_results[0]
    for s in sdk_results:
        print(
            f"| {s.name} | {s.rps:,.0f} | {s.p50_ms:.3f} | {s.p99_ms:.3f} | "
            f"{s.rps / base_sdk.rps:.2f}x | {s.p50_ms - base_sdk.p50_ms:+.3f} |"
        )


if __name__ == "__main__":
    main()
