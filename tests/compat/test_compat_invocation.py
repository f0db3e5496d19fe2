"""Compatibility: the invocation quickstart's calls, with Dapr-style sample apps written for
this project (``tests/compat/apps/invoke_*``), each started exactly as ``dapr run`` takes it:
``tandem run --app-id X --app-port P [--app-protocol grpc] --dapr-http-port … -- python3 app.py``.

- HTTP -> HTTP: a checkout app posts orders with ``dapr-app-id`` to an HTTP order processor.
- HTTP -> gRPC: the SDK's ``DaprClient().invoke_method`` (over HTTP, the SDK's default, and
  over gRPC's ``InvokeService``) reaches an app serving ``OnInvoke`` with ``dapr.ext.grpc.App``.
- gRPC -> gRPC: an app's own gRPC stub calls a helloworld-style service through its sidecar
  with ``dapr-app-id`` metadata (gRPC proxying).

Every caller runs to completion under ``tandem run`` and the test reads what it printed, as
a user following the quickstart would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from harness import Sidecar, remove_home, wait_healthy  # noqa: E402

from tandem.cli.ports import free_port  # noqa: E402

APPS = Path(__file__).resolve().parent / "apps"
CALLER_DEADLINE_SECONDS = 120


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """A fresh $TANDEM_HOME for this module; its control plane stops at the end."""
    path = Path(tempfile.mkdtemp(prefix="thc", dir="/tmp"))
    yield path
    remove_home(path)


def dapr_run(home: Path, app_id: str, *flags: str, app: list[str]) -> Sidecar:
    """``tandem run`` with `dapr run`'s own flag names; ports given, as a README would."""
    http, grpc_port, internal, metrics = (free_port() for _ in range(4))
    argv = [
        sys.executable,
        "-m",
        "tandem.cli.main",
        "run",
        "--app-id",
        app_id,
        *flags,
        "--dapr-http-port",
        str(http),
        "--dapr-grpc-port",
        str(grpc_port),
        "--dapr-internal-grpc-port",
        str(internal),
        "--metrics-port",
        str(metrics),
        "--",
        *app,
    ]
    output = home / f"{app_id}-{http}.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "TANDEM_HOME": str(home)}
        )
    return Sidecar(app_id, proc, http, grpc_port, internal, output, home)


def run_caller(home: Path, app_id: str, app: list[str]) -> str:
    """Run a caller app under ``tandem run`` to completion; its output, or a failure."""
    caller = dapr_run(home, app_id, app=app)
    try:
        code = caller.proc.wait(CALLER_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        caller.stop()
        pytest.fail(f"{app_id} did not finish:\n{caller.text()}")
    text = caller.text()
    assert code == 0, text
    return text


@pytest.fixture(scope="module")
def receivers(home: Path) -> Iterator[None]:
    started: list[Sidecar] = []

    def start(app_id: str, *flags: str, app: list[str]) -> None:
        started.append(dapr_run(home, app_id, *flags, app=app))
        wait_healthy(started[-1])  # one at a time: the first one sets up the home

    try:
        port = free_port()
        start(
            "order-processor",
            "--app-port",
            str(port),
            app=[sys.executable, str(APPS / "invoke_http_receiver.py"), str(port)],
        )
        port = free_port()
        start(
            "invoke-receiver",
            "--app-port",
            str(port),
            "--app-protocol",
            "grpc",
            app=[sys.executable, str(APPS / "invoke_grpc_receiver.py"), str(port)],
        )
        port = free_port()
        start(
            "greeter",
            "--app-port",
            str(port),
            "--app-protocol",
            "grpc",
            app=[sys.executable, str(APPS / "invoke_greeter_server.py"), str(port)],
        )
        yield
    finally:
        for sidecar in started:
            sidecar.stop()


def test_http_to_http_checkout_calls_order_processor(home, receivers):
    out = run_caller(
        home,
        "checkout",
        [sys.executable, str(APPS / "invoke_checkout_http.py"), "order-processor", "3"],
    )
    orders = [
        json.loads(line.split("Order passed: ", 1)[1])
        for line in out.splitlines()
        if "Order passed: " in line
    ]
    assert [json.loads(o["body"])["orderId"] for o in orders] == [1, 2, 3]
    assert {(o["method"], o["path"], o["caller"]) for o in orders} == {
        ("POST", "/orders", "checkout")
    }
    assert "checkout done" in out


def test_http_and_sdk_grpc_invoke_reach_a_grpc_app_on_invoke(home, receivers):
    out = run_caller(
        home,
        "invoke-caller",
        [sys.executable, str(APPS / "invoke_caller_sdk.py"), "invoke-receiver", "my-method"],
    )
    for protocol in ("http", "grpc"):
        line = next(x for x in out.splitlines() if f"{protocol}: " in x)
        content_type, _, text = line.split(f"{protocol}: ", 1)[1].partition(" ")
        assert content_type == "application/json"
        seen = json.loads(text)
        assert seen["reply"] == "INVOKE_RECEIVED"
        assert json.loads(seen["data"]) == {"id": 1}
        assert seen["caller"] == ["invoke-caller"]
    assert "caller done" in out


def test_grpc_to_grpc_proxying_with_dapr_app_id(home, receivers):
    out = run_caller(
        home,
        "greeter-client",
        [sys.executable, str(APPS / "invoke_greeter_client.py"), "greeter", "Dapr"],
    )
    assert "Greeting: Hello Dapr (from greeter-client)" in out
    assert "client done" in out
