"""Durable workflows with the official SDK, unchanged: tests/apps/workflow_app.py runs the
workflow and activity code (WorkflowRuntime), these tests drive it with DaprWorkflowClient.
One sidecar and app serve the whole module."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus
from harness import (
    APPS,
    Sidecar,
    json_lines,
    start_sidecar,
    tandem_cli,
    wait_until,
    workflow_output,
)

WAIT = 60


TRANSPORTS = ("http", "ext_proc")


@pytest.fixture(scope="module")
def apps(tandem_home: Path) -> Iterator[dict[str, tuple[Sidecar, Path]]]:
    """One sidecar and workflow app per HTTP door (the HTTP API is parity-tested)."""
    started: dict[str, tuple[Sidecar, Path]] = {}
    try:
        for transport in TRANSPORTS:
            log = tandem_home / f"activities-{transport}.jsonl"
            log.touch()
            sidecar = start_sidecar(
                tandem_home,
                f"wf-{transport.replace('_', '')}",
                "--api-transport",
                transport,
                command=[sys.executable, str(APPS / "workflow_app.py")],
                env={"WF_LOG": str(log)},
            )
            started[transport] = (sidecar, log)
        for sidecar, _ in started.values():
            wait_until(lambda s=sidecar: "workflow app ready" in s.text(), 60, "the workflow app")
        yield started
    finally:
        for sidecar, _ in started.values():
            sidecar.stop()


@pytest.fixture(scope="module")
def app(apps: dict[str, tuple[Sidecar, Path]]) -> tuple[Sidecar, Path]:
    return apps["http"]


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
    return workflow_output(client, instance, WAIT)


def test_chain_of_three_activities(client: DaprWorkflowClient, app: tuple[Sidecar, Path]) -> None:
    instance = f"chain-{uuid.uuid4().hex[:8]}"
    assert run(client, "chain", "x", instance_id=instance) == "x+++"
    # Each committed step ran once.
    assert [r["value"] for r in json_lines(app[1], instance=instance)] == ["x", "x+", "x++"]


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
    rounds = [r["value"] for r in json_lines(app[1], instance=instance)]
    assert rounds == ["round1", "round2", "round3"]


def test_activity_retry_policy(client: DaprWorkflowClient, app: tuple[Sidecar, Path]) -> None:
    key = uuid.uuid4().hex
    assert run(client, "retrying", key) == "ok after 3"
    assert len(json_lines(app[1], key=key)) == 3


def test_saga_compensates_after_a_failing_activity(
    client: DaprWorkflowClient, app: tuple[Sidecar, Path]
) -> None:
    instance = f"s-{uuid.uuid4().hex[:8]}"
    assert run(client, "saga", None, instance_id=instance) == "compensated hotel,flight"
    assert [r["what"] for r in json_lines(app[1], instance=instance, activity="cancel")] == [
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


# --- the HTTP workflow API, through both doors ----------------------------------------------


@pytest.fixture(params=TRANSPORTS)
def http(
    request: pytest.FixtureRequest, apps: dict[str, tuple[Sidecar, Path]]
) -> Iterator[httpx.Client]:
    sidecar, _ = apps[request.param]
    with httpx.Client(base_url=sidecar.base, timeout=30) as c:
        yield c


def status_of(http: httpx.Client, instance: str) -> str:
    got = http.get(f"/v1.0/workflows/dapr/{instance}")
    assert got.status_code == 200, got.text
    return got.json()["runtimeStatus"]


def wait_status(http: httpx.Client, instance: str, status: str) -> dict:
    wait_until(lambda: status_of(http, instance) == status, WAIT, f"{instance} {status}")
    return http.get(f"/v1.0/workflows/dapr/{instance}").json()


def test_http_start_pause_resume_raise_purge(http: httpx.Client) -> None:
    instance = f"h-{uuid.uuid4().hex[:8]}"
    started = http.post(
        f"/v1.0-beta1/workflows/dapr/waiter/start?instanceID={instance}", content=b'"in"'
    )
    assert started.status_code == 202, started.text
    assert started.json() == {"instanceID": instance}
    wait_status(http, instance, "RUNNING")
    assert http.post(f"/v1.0/workflows/dapr/{instance}/pause").status_code == 202
    assert status_of(http, instance) == "SUSPENDED"
    assert http.post(f"/v1.0-alpha1/workflows/dapr/{instance}/resume").status_code == 202
    assert status_of(http, instance) == "RUNNING"
    raised = http.post(f"/v1.0/workflows/dapr/{instance}/raiseEvent/go", content=b'"hi"')
    assert raised.status_code == 202, raised.text
    done = wait_status(http, instance, "COMPLETED")
    assert done["workflowName"] == "waiter"
    assert done["properties"]["dapr.workflow.input"] == '"in"'
    assert done["properties"]["dapr.workflow.output"] == '"hi"'
    assert done["createdAt"].endswith("Z")

    late = http.post(f"/v1.0/workflows/dapr/{instance}/raiseEvent/go", content=b"1")
    assert late.status_code == 500
    assert late.json()["errorCode"] == "ERR_RAISE_EVENT_WORKFLOW"

    assert http.post(f"/v1.0/workflows/dapr/{instance}/purge").status_code == 202
    gone = http.get(f"/v1.0/workflows/dapr/{instance}")
    assert gone.status_code == 404
    assert gone.json()["errorCode"] == "ERR_INSTANCE_ID_NOT_FOUND"


def test_http_terminate_and_a_random_instance_id(http: httpx.Client) -> None:
    started = http.post("/v1.0/workflows/dapr/waiter/start")
    assert started.status_code == 202
    instance = started.json()["instanceID"]
    assert instance
    wait_status(http, instance, "RUNNING")
    assert http.post(f"/v1.0/workflows/dapr/{instance}/terminate").status_code == 202
    wait_status(http, instance, "TERMINATED")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1.0/workflows/dapr/waiter/start?instanceID=bad%20id!", 400, "ERR_INSTANCE_ID_INVALID"),
        (
            f"/v1.0/workflows/dapr/waiter/start?instanceID={'x' * 65}",
            400,
            "ERR_INSTANCE_ID_TOO_LONG",
        ),
        ("/v1.0/workflows/other/waiter/start", 400, "ERR_WORKFLOW_COMPONENT_NOT_FOUND"),
        ("/v1.0/workflows/dapr/no-such-instance/terminate", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("/v1.0/workflows/dapr/no-such-instance/pause", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
        ("/v1.0/workflows/dapr/no-such-instance/raiseEvent/x", 404, "ERR_INSTANCE_ID_NOT_FOUND"),
    ],
)
def test_http_bad_input_gets_daprs_answer(
    http: httpx.Client, path: str, status: int, code: str
) -> None:
    reply = http.post(path)
    assert reply.status_code == status, reply.text
    assert reply.json()["errorCode"] == code
    assert reply.json()["message"]
    assert http.get("/v1.0/healthz").status_code == 204  # still serving


def test_http_unknown_workflow_fails(http: httpx.Client) -> None:
    started = http.post("/v1.0/workflows/dapr/not-registered/start")
    assert started.status_code == 202
    failed = wait_status(http, started.json()["instanceID"], "FAILED")
    assert "not-registered" in failed["properties"]["dapr.workflow.failure.error_message"]


def test_http_filtered_listing_and_batch_terminate_purge(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = [f"b{tag}-{i}" for i in range(3)]
    for i in ids:
        assert http.post(f"/v1.0/workflows/dapr/waiter/start?instanceID={i}").status_code == 202
    for i in ids:
        wait_status(http, i, "RUNNING")
    listed = http.get("/v1.0/workflows/dapr", params={"runtimeStatus": "RUNNING", "name": "waiter"})
    assert listed.status_code == 200, listed.text
    running = [x["instanceID"] for x in listed.json()["instances"]]
    assert set(ids) <= set(running)
    page = http.get("/v1.0/workflows/dapr", params={"name": "waiter", "pageSize": "1"}).json()
    assert len(page["instances"]) == 1 and page["continuationToken"]

    ended = http.post(
        "/v1.0/workflows/dapr/terminate", params={"name": "waiter", "runtimeStatus": "RUNNING"}
    )
    assert ended.status_code == 200, ended.text
    assert set(ids) <= set(ended.json()["terminated"])
    for i in ids:
        wait_status(http, i, "TERMINATED")
    purged = http.post("/v1.0/workflows/dapr/purge", params={"runtimeStatus": "TERMINATED"})
    assert set(ids) <= set(purged.json()["purged"])
    assert http.get(f"/v1.0/workflows/dapr/{ids[0]}").status_code == 404

    bad = http.get("/v1.0/workflows/dapr", params={"runtimeStatus": "SLEEPING"})
    assert bad.status_code == 400 and bad.json()["errorCode"] == "ERR_BAD_REQUEST"


def test_dapr_grpc_workflow_beta1_methods(app: tuple[Sidecar, Path]) -> None:
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, workflow_pb2

    sidecar, _ = app
    instance = f"g-{uuid.uuid4().hex[:8]}"
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        started = stub.StartWorkflowBeta1(
            workflow_pb2.StartWorkflowRequest(
                instance_id=instance, workflow_component="dapr", workflow_name="chain", input=b'"g"'
            ),
            timeout=30,
        )
        assert started.instance_id == instance

        def done() -> bool:
            got = stub.GetWorkflowBeta1(
                workflow_pb2.GetWorkflowRequest(instance_id=instance, workflow_component="dapr"),
                timeout=30,
            )
            return (
                got.runtime_status == "COMPLETED"
                and got.properties["dapr.workflow.output"] == '"g+++"'
            )

        wait_until(done, WAIT, "the chain over gRPC")
        stub.PurgeWorkflowBeta1(
            workflow_pb2.PurgeWorkflowRequest(instance_id=instance, workflow_component="dapr"),
            timeout=30,
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.GetWorkflowBeta1(
                workflow_pb2.GetWorkflowRequest(instance_id=instance, workflow_component="dapr"),
                timeout=30,
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


# --- what the 1.19 SDK calls beyond the basics ----------------------------------------------


def test_sdk_listing_history_and_rerun(
    client: DaprWorkflowClient, app: tuple[Sidecar, Path]
) -> None:
    instance = f"r-{uuid.uuid4().hex[:8]}"
    assert run(client, "chain", "r", instance_id=instance) == "r+++"

    ids = list(client.iter_workflow_instance_ids(page_size=2))
    assert instance in ids and len(ids) == len(set(ids))
    first = client.list_workflow_instance_ids(page_size=1)
    assert len(first.instance_ids) == 1
    assert bool(first.continuation_token) == (len(ids) > 1)

    history = client.get_workflow_history(instance)
    scheduled = [e for e in history if e.is_rerunnable]
    assert len(scheduled) == 3

    # Rerun from the second step with a new input for it: step one is not run again.
    again = client.rerun_workflow_from_event(
        instance, scheduled[1].event_id, new_instance_id=f"{instance}-2", input="R"
    )
    assert again == f"{instance}-2"
    state = client.wait_for_workflow_completion(again, timeout_in_seconds=WAIT)
    assert state is not None and json.loads(state.serialized_output) == "R++"
    assert [r["value"] for r in json_lines(app[1], instance=again)] == ["R", "R+"]


# --- the CLI --------------------------------------------------------------------------------


def tandem(home: Path, *args: str) -> object:
    done = tandem_cli(home, "workflow", *args, "--output", "json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_cli_list_history_raise_terminate_purge(
    client: DaprWorkflowClient, app: tuple[Sidecar, Path], tandem_home: Path
) -> None:
    app_id = app[0].app_id
    tag = uuid.uuid4().hex[:6]
    done = f"cli{tag}-done"
    assert run(client, "chain", "c", instance_id=done) == "c+++"
    waiting = [f"cli{tag}-w{i}" for i in range(2)]
    for i in waiting:
        client.schedule_new_workflow(workflow="waiter", instance_id=i)
        client.wait_for_workflow_start(i, timeout_in_seconds=WAIT)

    listed = tandem(tandem_home, "list", "-a", app_id, "--status", "RUNNING", "--name", "waiter")
    assert set(waiting) <= {i["instanceID"] for i in listed}
    assert done not in {i["instanceID"] for i in listed}

    history = tandem(tandem_home, "history", "-a", app_id, done)
    assert sum(1 for e in history if "taskScheduled" in e) == 3

    tandem(tandem_home, "raise-event", "-a", app_id, waiting[0], "go", "--data", '"cli"')
    state = client.wait_for_workflow_completion(waiting[0], timeout_in_seconds=WAIT)
    assert state is not None and json.loads(state.serialized_output) == "cli"

    ended = tandem(
        tandem_home, "terminate", "-a", app_id, "--status", "RUNNING", "--name", "waiter"
    )
    assert waiting[1] in ended["terminated"]
    client.wait_for_workflow_completion(waiting[1], timeout_in_seconds=WAIT)
    purged = tandem(tandem_home, "purge", "-a", app_id, done)
    assert purged["count"] == 1
    assert client.get_workflow_state(done) is None


def test_workflow_metrics_under_daprs_names(
    client: DaprWorkflowClient, app: tuple[Sidecar, Path]
) -> None:
    sidecar, _ = app
    assert run(client, "chain", "m") == "m+++"
    port = sidecar.record()["metrics_port"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    lines = text.splitlines()

    def has(prefix: str, *labels: str) -> bool:
        return any(line.startswith(prefix) and all(x in line for x in labels) for line in lines)

    app_id = f'app_id="{sidecar.app_id}"'
    assert has("dapr_runtime_workflow_operation_count{", app_id, 'operation="create_workflow"')
    assert has(
        "dapr_runtime_workflow_execution_count{", 'workflow_name="chain"', 'status="success"'
    )
    assert has(
        "dapr_runtime_workflow_activity_execution_count{",
        'activity_name="step"',
        'status="success"',
    )
    assert has("dapr_runtime_workflow_execution_latency_bucket{", 'workflow_name="chain"')
    assert has("dapr_runtime_workflow_scheduling_latency_bucket{", 'workflow_name="chain"')


def test_taskhub_purge_by_filter_takes_finished_instances_only(
    client: DaprWorkflowClient, app: tuple[Sidecar, Path]
) -> None:
    import grpc
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2 as pb
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

    done = f"pf-{uuid.uuid4().hex[:8]}"
    assert run(client, "chain", "p", instance_id=done) == "p+++"
    waiting = client.schedule_new_workflow(workflow="waiter")
    client.wait_for_workflow_start(waiting, timeout_in_seconds=WAIT)
    with grpc.insecure_channel(f"127.0.0.1:{app[0].grpc_port}") as channel:
        answer = pb_grpc.TaskHubSidecarServiceStub(channel).PurgeInstances(
            pb.PurgeInstancesRequest(purgeInstanceFilter=pb.PurgeInstanceFilter()), timeout=30
        )
    assert answer.deletedInstanceCount >= 1
    assert client.get_workflow_state(done) is None
    assert client.get_workflow_state(waiting) is not None  # still running: kept
    client.terminate_workflow(waiting)
