"""The official SDK on both sides (issue 17): a gRPC app built with ``dapr.ext.grpc.App``
gets cron ticks (``ListInputBindings``/``OnBindingEvent``) and a job (``OnJobEvent``), and
``DaprClient`` drives output bindings and the Jobs API over gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._jobs import Job
from google.protobuf.any_pb2 import Any as GrpcAny
from google.protobuf.wrappers_pb2 import StringValue
from harness import APPS, Sidecar, json_lines, start_app_sidecar, wait_until

RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: ticks}}
spec:
  type: bindings.cron
  version: v1
  metadata:
  - {{name: schedule, value: "@every 1s"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: files}}
spec:
  type: bindings.localstorage
  version: v1
  metadata:
  - {{name: rootPath, value: "{root}"}}
"""


@pytest.fixture(scope="module")
def sidecar(tandem_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    resources = tmp_path_factory.mktemp("res")
    root = tmp_path_factory.mktemp("files")
    (resources / "bindings.yaml").write_text(RESOURCES.format(root=root))
    log = tandem_home / "sdk-triggers.jsonl"
    s: Sidecar = start_app_sidecar(
        tandem_home,
        "sdk-triggers",
        APPS / "sdk_triggers_app.py",
        "--app-protocol",
        "grpc",
        "--resources-path",
        str(resources),
        app_args=[str(log)],
    )
    try:
        yield s, log, root
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def sdk_env(sidecar: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads its DAPR_* settings from the environment on each use.
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar[0].http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sidecar[0].grpc_port))


def test_a_grpc_sdk_app_gets_binding_events_and_jobs(sidecar: tuple) -> None:
    s, log, _ = sidecar
    wait_until(
        lambda: len([e for e in json_lines(log) if e["kind"] == "binding"]) >= 2,
        30,
        "two cron ticks",
    )
    data = GrpcAny()
    data.Pack(StringValue(value="from the sdk"))
    with DaprClient(f"127.0.0.1:{s.grpc_port}") as client:
        client.schedule_job(Job(name="sdk-job", due_time="1s", data=data))
        got = client.get_job("sdk-job")
        assert (got.name, got.due_time) == ("sdk-job", "1s")
        wait_until(lambda: [e for e in json_lines(log) if e["kind"] == "job"], 30, "the job")
        jobs = [e for e in json_lines(log) if e["kind"] == "job"]
        assert jobs[0]["name"] == "sdk-job" and "from the sdk" in jobs[0]["data"]
        with pytest.raises(DaprGrpcError):
            client.get_job("sdk-job")  # a one-shot job is gone once it fired


def test_sdk_client_output_binding_and_errors(sidecar: tuple) -> None:
    s, _, root = sidecar
    with DaprClient(f"127.0.0.1:{s.grpc_port}") as client:
        client.invoke_binding("files", "create", b"sdk bytes", {"fileName": "sdk.txt"})
        assert (root / "sdk.txt").read_bytes() == b"sdk bytes"
        resp = client.invoke_binding("files", "get", b"", {"fileName": "sdk.txt"})
        assert resp.data == b"sdk bytes"
        with pytest.raises(grpc.RpcError) as info:
            client.invoke_binding("nope", "get", b"")
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "couldn't find output binding nope" in info.value.details()
        client.schedule_job(Job(name="later", schedule="@every 1h"))
        client.delete_job("later")
