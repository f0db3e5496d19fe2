"""Shuts down slowly: on SIGTERM it waits DELAY seconds, then saves state through its sidecar
and prints the status, so a test sees whether the sidecar kept serving it meanwhile."""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx

DELAY = float(os.environ.get("DELAY", "1"))


def on_term(signum: int, frame: object) -> None:
    time.sleep(DELAY)
    port = os.environ["DAPR_HTTP_PORT"]
    resp = httpx.post(
        f"http://127.0.0.1:{port}/v1.0/state/statestore",
        json=[{"key": "bye", "value": "saved during shutdown"}],
        timeout=10,
    )
    print(f"saved after SIGTERM: {resp.status_code}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print(
    f"app {os.environ['APP_ID']} up, sidecar HTTP port {os.environ['DAPR_HTTP_PORT']}", flush=True
)
while True:
    time.sleep(3600)
