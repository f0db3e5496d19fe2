"""Virtual actors end to end with the official SDK: a FastAPI ``DaprActor`` host under
`tandem run`, ``ActorProxy`` clients on another sidecar, placement and reminders in the
control plane, calls to the owner through both Envoys."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from actors_harness import actor_host, client
from harness import json_lines, start_sidecar, wait_until


@pytest.fixture(scope="module")
def actor_log(tandem_home):
    return tandem_home / "actors.jsonl"


@pytest.fixture(scope="module")
def mesh(tandem_home, actor_log):
    host = actor_host(tandem_home, "counter-host", "host-1", actor_log)
    caller = start_sidecar(tandem_home, "actor-caller")
    yield host, caller
    for s in (caller, host):
        s.stop()


def test_sdk_proxy_calls_a_remote_actor_and_its_state_survives(mesh):
    host, caller = mesh
    assert client(caller, "add", "c-1", "5") == [5]
    assert client(caller, "add", "c-1", "2", "2") == [7, 9]
    # The same actor through its host's own sidecar: one actor, one state.
    assert client(host, "add", "c-1", "1") == [10]
    # The host's state API reads what the actor saved (keys are the host app's, as in Dapr).
    r = httpx.get(f"{host.base}/v1.0/actors/Counter/c-1/state/n", timeout=10)
    assert r.status_code == 200 and r.json() == 10
    assert (
        httpx.get(f"{host.base}/v1.0/actors/Counter/c-1/state/none", timeout=10).status_code == 204
    )


def test_metadata_lists_hosted_types_with_their_active_counts(mesh):
    host, caller = mesh
    client(caller, "add", "meta-1", "1")
    md = httpx.get(f"{host.base}/v1.0/metadata", timeout=10).json()
    counts = {a["type"]: a["count"] for a in md["actors"]}
    assert counts["Counter"] >= 1
    assert md["actorRuntime"]["runtimeStatus"] == "RUNNING"
    assert md["actorRuntime"]["placement"] == "placement: connected"
    assert md["actorRuntime"]["hostReady"] is True
    # A sidecar that hosts nothing lists no types, but still routes.
    assert httpx.get(f"{caller.base}/v1.0/metadata", timeout=10).json()["actors"] == []


def test_fifty_concurrent_calls_to_one_actor_never_overlap(mesh, actor_log):
    _, caller = mesh
    results = client(caller, "slow-burst", "turns-1", "50", "5")
    assert results == ["host-1"] * 50
    inside = 0
    for entry in json_lines(actor_log):
        if entry["id"] != "turns-1" or entry.get("method") != "Slow":
            continue
        inside += 1 if entry["event"] == "enter" else -1
        assert inside in (0, 1), "two turns of one actor overlapped"


def test_calls_to_different_actors_run_in_parallel(mesh):
    _, caller = mesh
    started = time.monotonic()
    assert client(caller, "parallel", "700", *(f"p-{i}" for i in range(6))) == ["host-1"] * 6
    # Six 0.7 s calls one after another would take 4.2 s; in parallel they take about one.
    assert time.monotonic() - started < 4.0


def test_a_periodic_reminder_fires_until_deleted(mesh, actor_log):
    _, caller = mesh
    client(caller, "remind", "r-1", "300")

    def beats() -> int:
        return sum(
            1 for e in json_lines(actor_log) if e["event"] == "reminder" and e["id"] == "r-1"
        )

    wait_until(lambda: beats() >= 3, 20, "three reminder fires")
    assert all(e["state"] == "payload" for e in json_lines(actor_log) if e["event"] == "reminder")
    client(caller, "forget", "r-1")
    settled = beats()
    time.sleep(1.5)  # a window in which a deleted reminder must not fire
    assert beats() <= settled + 1  # at most one firing that was already in flight


def test_a_timer_fires_on_the_owner(mesh, actor_log):
    _, caller = mesh
    client(caller, "tick", "t-1", "200")
    wait_until(
        lambda: (
            sum(1 for e in json_lines(actor_log) if e["event"] == "timer" and e["id"] == "t-1") >= 2
        ),
        20,
        "two timer fires",
    )


def test_an_oversized_actor_call_is_refused_and_the_sidecar_keeps_serving(mesh):
    _, caller = mesh
    r = httpx.put(
        f"{caller.base}/v1.0/actors/Counter/big/method/Add", content=b"1" * (5 << 20), timeout=30
    )
    assert r.status_code == 413 and r.json()["errorCode"] == "ERR_REQUEST_TOO_LARGE"
    assert client(caller, "add", "after-big", "1") == [1]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("PUT", "/v1.0/actors/dapr.internal.x/1/method/m", 403, "ERR_ACTOR_TYPE_RESERVED"),
        ("PUT", "/v1.0/actors/Nobody/1/method/m", 404, "ERR_ACTOR_NO_ADDRESS"),
        ("PUT", "/v1.0/actors/Counter/1/reminders/r", 403, "ERR_ACTOR_REMINDER_NON_HOSTED"),
        ("GET", "/v1.0/actors/Counter/1/reminders/none", 404, "ERR_ACTOR_REMINDER_NOT_FOUND"),
        ("POST", "/v1.0/actors/Counter/1/state", 400, "ERR_ACTOR_STATE_TRANSACTION_SAVE"),
    ],
)
def test_bad_actor_calls_get_daprs_errors(mesh, method, path, status, code):
    _, caller = mesh
    body = b"{not json" if path.endswith("/state") else b"{}"
    r = httpx.request(method, caller.base + path, content=body, timeout=30)
    assert r.status_code == status, r.text
    assert r.json()["errorCode"] == code
    assert httpx.get(f"{caller.base}/v1.0/healthz", timeout=10).status_code == 204


def test_grpc_actor_api_invokes_saves_state_and_registers_reminders(mesh, actor_log):
    import grpc
    from dapr.proto.runtime.v1 import actors_pb2, dapr_pb2_grpc
    from google.protobuf import any_pb2

    host, caller = mesh
    with grpc.insecure_channel(f"127.0.0.1:{caller.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        resp = stub.InvokeActor(
            actors_pb2.InvokeActorRequest(
                actor_type="Counter", actor_id="g-1", method="Add", data=b"3"
            ),
            timeout=30,
        )
        assert resp.data == b"3"
        with pytest.raises(grpc.RpcError) as err:
            stub.InvokeActor(
                actors_pb2.InvokeActorRequest(
                    actor_type="dapr.internal.x", actor_id="1", method="m"
                ),
                timeout=30,
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with grpc.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        op = actors_pb2.TransactionalActorStateOperation(
            operationType="upsert", key="note", value=any_pb2.Any(value=b'"hello"')
        )
        stub.ExecuteActorStateTransaction(
            actors_pb2.ExecuteActorStateTransactionRequest(
                actor_type="Counter", actor_id="g-1", operations=[op]
            ),
            timeout=30,
        )
        got = stub.GetActorState(
            actors_pb2.GetActorStateRequest(actor_type="Counter", actor_id="g-1", key="note"),
            timeout=30,
        )
        assert got.data == b'"hello"'
        stub.RegisterActorReminder(
            actors_pb2.RegisterActorReminderRequest(
                actor_type="Counter", actor_id="g-2", name="grpc", due_time="0s", data=b"payload"
            ),
            timeout=30,
        )
        wait_until(
            lambda: any(
                e["event"] == "reminder" and e["id"] == "g-2" and e["state"] == "payload"
                for e in json_lines(actor_log)
            ),
            20,
            "the reminder registered over gRPC",
        )


def test_grpc_lists_reminders_and_timers_and_unregisters_reminders_by_type(mesh):
    import grpc
    from dapr.proto.runtime.v1 import actors_pb2, dapr_pb2_grpc

    host, _ = mesh
    with grpc.insecure_channel(f"127.0.0.1:{host.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        for actor_id, name in (("l-1", "a"), ("l-1", "b"), ("l-2", "a")):
            stub.RegisterActorReminder(
                actors_pb2.RegisterActorReminderRequest(
                    actor_type="Counter", actor_id=actor_id, name=name, due_time="1h", period="2h"
                ),
                timeout=30,
            )
        stub.RegisterActorTimer(
            actors_pb2.RegisterActorTimerRequest(
                actor_type="Counter", actor_id="l-1", name="t", due_time="1h", callback="Tick"
            ),
            timeout=30,
        )

        def reminders(actor_id: str = "") -> list[tuple[str, str, str]]:
            got = stub.ListActorReminders(
                actors_pb2.ListActorRemindersRequest(actor_type="Counter", actor_id=actor_id),
                timeout=30,
            )
            return sorted((r.reminder.actor_id, r.name, r.reminder.period) for r in got.reminders)

        assert reminders("l-1") == [("l-1", "a", "2h"), ("l-1", "b", "2h")]
        timers = stub.ListActorTimers(
            actors_pb2.ListActorTimersRequest(actor_type="Counter", actor_id="l-1"), timeout=30
        ).timers
        assert [(t.name, t.timer.due_time, t.timer.callback) for t in timers] == [
            ("t", "1h", "Tick")
        ]
        timer = stub.GetActorTimer(
            actors_pb2.GetActorTimerRequest(actor_type="Counter", actor_id="l-1", name="t"),
            timeout=30,
        )
        assert (timer.actor_id, timer.callback) == ("l-1", "Tick")
        with pytest.raises(grpc.RpcError) as err:
            stub.GetActorTimer(
                actors_pb2.GetActorTimerRequest(actor_type="Counter", actor_id="l-1", name="x"),
                timeout=30,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        stub.UnregisterActorRemindersByType(
            actors_pb2.UnregisterActorRemindersByTypeRequest(actor_type="Counter", actor_id="l-1"),
            timeout=30,
        )
        assert reminders("l-1") == [] and reminders("l-2") == [("l-2", "a", "2h")]
        stub.UnregisterActorTimer(
            actors_pb2.UnregisterActorTimerRequest(actor_type="Counter", actor_id="l-1", name="t"),
            timeout=30,
        )
        stub.UnregisterActorReminder(
            actors_pb2.UnregisterActorReminderRequest(
                actor_type="Counter", actor_id="l-2", name="a"
            ),
            timeout=30,
        )


def test_tandem_actors_list_shows_where_each_actor_lives_and_its_reminders(mesh, tandem_home):
    import os
    import subprocess
    import sys

    _, caller = mesh
    client(caller, "add", "where-1", "1")
    client(caller, "remind", "where-2", "60000")
    env = {**os.environ, "TANDEM_HOME": str(tandem_home)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tandem.cli.main",
            "actors",
            "list",
            "--type",
            "Counter",
            "-o",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in json.loads(done.stdout)}
    assert rows["where-1"]["appId"] == "counter-host"
    assert rows["where-1"]["host"].startswith("counter-host-")
    assert rows["where-2"]["reminders"] == ["beat"]
    client(caller, "forget", "where-2")


def test_metrics_count_actor_activations_and_reminders(mesh):
    host, caller = mesh
    client(caller, "add", "metric-1", "1")
    port = host.record()["metrics_port"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    activated = [
        line
        for line in text.splitlines()
        if line.startswith("dapr_runtime_actor_activated_total{")
        and 'actor_type="Counter"' in line
        and 'app_id="counter-host"' in line
    ]
    assert activated and float(activated[0].rsplit(" ", 1)[1]) >= 1
    assert "# TYPE dapr_runtime_actor_pending_actor_calls gauge" in text
