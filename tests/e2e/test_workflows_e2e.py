"""Durable workflows with the official SDK, unchanged: tests/apps/workflow_app.py runs the
workflow and activity code (WorkflowRuntime), these tests drive it with DaprWorkflowClient.
One sidecar and app serve the whole module."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus
from harness import APPS, Sidecar, start_sidecar, wait_until

WAIT = 60


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sidecar, Path]]:
    home = tmp_path_factory.mktemp("wf")
    log = home / "activities.jsonl"
    log.touch()
    sidecar = start_sidecar(
        home, "wfapp", command=[sys.executable, str(APPS / "workflow_app.py")],
        env={"WF_LOG": str(log)},
    )
    wait_until(lambda: "workflow app ready" in sidecar.text(), 60, "the workflow app")
    try:
        yield sidecar, log
    finally:
        sidecar.stop()


@pytest.fixture(scope="module")
def client(app: tuple[Sidecar, Path]) -> Iterator[DaprWorkflowClient]:
    sidecar, _ = app
    c = DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
    try:
        yield c
    finally:
        c.close()


def run(client: DaprWorkflowClient, name: str, input: object = None, **kw: object) -> object:
    instance = client.schedule_new_workflow(workflow=name, input=input, **kw)
    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=WAIT)
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED, (state.runtime_status, state.failure_details)
    return json.loads(state.serialized_output)


def activities(log: Path, **match: object) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if all(row.get(k) == v for k, v in match.items()):
            out.append(row)
    return out


def test_chain_of_three_activities(client: DaprWorkflowClient, app: tuple[Sidecar, Path]) -> None:
    instance = f"chain-{uuid.uuid4().hex[:8]}"
    assert run(client, "chain", "x", instance_id=instance) == "x+++"
    # Each committed step ran once.
    assert [r["value"] for r in activities(app[1], instance=instance)] == ["x", "x+", "x++"]
