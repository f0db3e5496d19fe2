"""Issue acceptance, end to end: the official SDK's ``publish_event``, ``subscribe`` and
``subscribe_with_handler`` work through `tandem run`. One program
(`tests/apps/sdk_pubsub.py`, no app port: streaming subscriptions only) runs under a
sidecar over the embedded SQLite broker and one over real Redis, at the same time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from harness import APPS, start_sidecar

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)

SDK_APP = str(APPS / "sdk_pubsub.py")
RUN_DEADLINE_S = 60

CHECKS = (
    "ok: the open stream is listed as a STREAMING subscription",
    "ok: subscribe receives every published event",
    "ok: an event answered RETRY is delivered again",
    "ok: closing the stream ends the subscription",
    "ok: an unanswered event is redelivered after the close",
    "ok: an event answered DROP goes to the dead-letter topic",
    "ok: subscribe_with_handler gets every event",
    "ok: the handler's RETRY answer brings the event back once",
    "ok: the close function ends the handler's subscription",
)


@pytest.fixture(scope="module")
def sdk_runs(tandem_home: Path, redis_server: RedisServer) -> dict[str, str]:  # noqa: F811
    resources = tandem_home / "resources-redis"
    resources.mkdir()
    (resources / "pubsub.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: pubsub}\n"
        "spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n"
        f"  - {{name: redisHost, value: '{redis_server.address}'}}\n"
        "  - {name: redeliverInterval, value: 1s}\n"
        # A RETRY answer comes back through the component's redelivery (no Resiliency
        # policy, as in Dapr), after processingTimeout: short here, 60 s by default.
        "  - {name: processingTimeout, value: 2s}\n"
    )
    command = [sys.executable, SDK_APP, "pubsub"]
    sidecars = {
        "sqlite": start_sidecar(tandem_home, "sdk-sqlite", command=command, wait=False),
        "redis": start_sidecar(
            tandem_home,
            "sdk-redis",
            "--resources-path",
            str(resources),
            command=command,
            wait=False,
        ),
    }
    runs = {}
    try:
        for name, sidecar in sidecars.items():
            try:
                code = sidecar.proc.wait(RUN_DEADLINE_S)
            except subprocess.TimeoutExpired:
                code = sidecar.stop()
            runs[name] = f"exit {code}\n{sidecar.text()}"
    finally:
        for sidecar in sidecars.values():
            sidecar.stop()
    return runs


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
def test_official_sdk_publishes_and_consumes_with_subscribe_and_subscribe_with_handler(
    broker: str, sdk_runs: dict[str, str]
) -> None:
    output = sdk_runs[broker]
    assert "all pub/sub checks passed" in output, output
    assert not any(line.startswith("FAIL:") for line in output.splitlines()), output
    for expected in CHECKS:
        assert expected in output, output
