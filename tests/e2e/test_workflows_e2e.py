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
def app(tandem_home: Path) -> Iterator[tuple[Sidecar, Path]]:
    home = tandem_home
    log = home / "activities.jsonl"
    log.touch()
    sidecar = start_sidecar(
        home,
        "wfapp",
        command=[sys.executable, str(APPS / "workflow_app.py")],
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
    assert state.runtime_status == WorkflowStatus.COMPLETED, (
        state.runtime_status,
        state.failure_details,
    )
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


def test_fan_out_fan_in_of_twenty(client: DaprWorkflowClient) -> None:
    assert run(client, "fanout", 20) == sum(i * i for i in range(20))


@pytest.mark.parametrize("approve", [True, False])
def test_human_approval_event_or_timeout(client: DaprWorkflowClient, approve: bool) -> None:
    instance = client.schedule_new_workflow(workflow="approval", input=2.0 if approve else 1.0)
    client.wait_for_workflow_start(instance, timeout_in_seconds=WAIT)
    if approve:
        client.raise_workflow_event(instance, "approve", data="alice")
    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == ("approved by alice" if approve else "timed out")


def test_event_raised_before_the_wait_is_buffered(client: DaprWorkflowClient) -> None:
    instance = client.schedule_new_workflow(workflow="sleeper", input=1.0)
    client.raise_workflow_event(instance, "unused", data=1)
    state = client.wait_for_workflow_completion(instance, timeout_in_seconds=WAIT)
    assert state is not None and json.loads(state.serialized_output) == "after-timer+"


def test_child_workflow(client: DaprWorkflowClient) -> None:
    instance = f"p-{uuid.uuid4().hex[:8]}"
    assert run(client, "parent", "c", instance_id=instance) == "child said c+++"
    child = client.get_workflow_state(f"{instance}-c")
    assert child is not None and child.runtime_status == WorkflowStatus.COMPLETED


def test_continue_as_new(client: DaprWorkflowClient, app: tuple[Sidecar, Path]) -> None:
    instance = f"m-{uuid.uuid4().hex[:8]}"
    assert run(client, "monitor", 1, instance_id=instance) == 3
    rounds = [r["value"] for r in activities(app[1], instance=instance)]
    assert rounds == ["round1", "round2", "round3"]


def test_activity_retry_policy(client: DaprWorkflowClient, app: tuple[Sidecar, Path]) -> None:
    key = uuid.uuid4().hex
    assert run(client, "retrying", key) == "ok after 3"
    assert len(activities(app[1], key=key)) == 3


def test_saga_compensates_after_a_failing_activity(
    client: DaprWorkflowClient, app: tuple[Sidecar, Path]
) -> None:
    instance = f"s-{uuid.uuid4().hex[:8]}"
    assert run(client, "saga", None, instance_id=instance) == "compensated hotel,flight"
    assert [r["what"] for r in activities(app[1], instance=instance, activity="cancel")] == [
        "hotel",
        "flight",
    ]


def test_unknown_workflow_fails_with_details(client: DaprWorkflowClient) -> None:
    bad = client.schedule_new_workflow(workflow="no-such-workflow")
    state = client.wait_for_workflow_completion(bad, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.FAILED
    assert "no-such-workflow" in state.failure_details.message


def test_terminate_recursive_suspend_resume_purge(client: DaprWorkflowClient) -> None:
    waiting = client.schedule_new_workflow(workflow="waiter")
    client.wait_for_workflow_start(waiting, timeout_in_seconds=WAIT)
    client.pause_workflow(waiting)
    assert client.get_workflow_state(waiting).runtime_status == WorkflowStatus.SUSPENDED
    client.raise_workflow_event(waiting, "go", data="late")
    client.resume_workflow(waiting)
    state = client.wait_for_workflow_completion(waiting, timeout_in_seconds=WAIT)
    assert state is not None and json.loads(state.serialized_output) == "late"

    outer = f"n-{uuid.uuid4().hex[:8]}"
    client.schedule_new_workflow(workflow="nested", instance_id=outer)
    wait_until(
        lambda: client.get_workflow_state(f"{outer}-w") is not None, WAIT, "the child to start"
    )
    client.terminate_workflow(outer, recursive=True)
    for instance in (outer, f"{outer}-w"):
        state = client.wait_for_workflow_completion(instance, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED

    client.purge_workflow(outer, recursive=True)
    assert client.get_workflow_state(outer) is None
    assert client.get_workflow_state(f"{outer}-w") is None
