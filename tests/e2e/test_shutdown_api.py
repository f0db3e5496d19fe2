"""Dapr's Shutdown API (issue 22): `POST /v1.0/shutdown` (both HTTP doors) and the gRPC
`Shutdown` stop the sidecar and its app gracefully: `tandem run` exits 0."""

from __future__ import annotations

import sys

import httpx
import pytest
from harness import start_sidecar, wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# An app that asks its own sidecar to shut down with the SDK (gRPC), then waits to be stopped.
SDK_SHUTDOWN = [
    sys.executable,
    "-c",
    "import time\nfrom dapr.clients import DaprClient\n"
    "with DaprClient() as c:\n    c.shutdown()\ntime.sleep(600)",
]


@pytest.mark.parametrize("transport", ["http", "ext_proc", "grpc"])
def test_the_shutdown_api_stops_the_sidecar_and_its_app(tandem_home, transport):
    door = "ext_proc" if transport == "ext_proc" else "http"
    command = SDK_SHUTDOWN if transport == "grpc" else SLEEPER
    sidecar = start_sidecar(
        tandem_home,
        f"down-{transport}",
        "--api-transport",
        door,
        command=command,
        wait=transport != "grpc",  # that app may stop it before a health check would look
    )
    try:
        if transport != "grpc":
            answer = httpx.post(f"{sidecar.base}/v1.0/shutdown", timeout=10)
            assert answer.status_code == 204
        wait_until(lambda: sidecar.proc.poll() is not None, 30, "tandem run to exit")
        assert sidecar.proc.returncode == 0, sidecar.text()
        assert "unexpectedly" not in sidecar.text()
    finally:
        sidecar.stop()
