"""`tandem run --runtime-workers 2` through a real Envoy, both HTTP doors and the gRPC API.

Two sidecars with two runtime processes each: ``wk-http`` (HTTP/1.1 door, a subscriber
app) and ``wk-extproc`` (ext_proc door, an actor host). Which process served a call is read
from the sidecar's ``/metrics``, where the owner folds in each worker's series with a
``worker`` label: state and publish calls must reach both processes through each door and
the gRPC API; subscriptions and actors keep working (the owner serves them); a worker
killed with SIGKILL is restarted while the other keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dapr.clients import DaprClient
from dapr.conf import settings
from harness import APPS, Sidecar, child_processes, start_sidecar, wait_until
from prometheus_client.parser import text_string_to_metric_families
from pubsub_harness import Records

from tandem.cli.home import Home
from tandem.cli.ports import free_port

TOPIC = "wk-orders"
DOORS = ("http", "ext_proc")


@pytest.fixture(scope="module")
def records(tandem_home: Path) -> Records:
    return Records(tandem_home / "deliveries.jsonl")


RELOADED = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: reloaded}}
spec:
  type: state.sqlite
  version: v1
  metadata: [{{name: connectionString, value: "{path}"}}]
"""


@pytest.fixture(scope="module")
def extra_resources(tandem_home: Path) -> Path:
    """A second --resources-path with a state store the hot reload test removes."""
    folder = tandem_home / "extra-resources"
    folder.mkdir()
    (folder / "reloaded.yaml").write_text(RELOADED.format(path=tandem_home / "reloaded.db"))
    return folder


@pytest.fixture(scope="module")
def sidecars(
    tandem_home: Path, records: Records, extra_resources: Path
) -> Iterator[dict[str, Sidecar]]:
    started: dict[str, Sidecar] = {}
    try:
        port = free_port()
        defaults = Home(tandem_home).ensure_default_resources()
        subscriptions = [{"pubsubname": "pubsub", "topic": TOPIC, "route": "/orders"}]
        started["http"] = start_sidecar(
            tandem_home,
            "wk-http",
            "--api-transport",
            "http",
            "--resources-path",
            str(defaults),
            "--resources-path",
            str(extra_resources),
            "--runtime-workers",
            "2",
            "--app-port",
            str(port),
            command=[
                sys.executable,
                str(APPS / "subscriber_app.py"),
                str(port),
                str(records.path),
                json.dumps(subscriptions),
            ],
        )
        started["ext_proc"] = start_sidecar(
            tandem_home,
            "wk-extproc",
            "--api-transport",
            "ext_proc",
            "--runtime-workers",
            "2",
            "--app-port",
            str(free_port()),
            command=[sys.executable, str(APPS / "actor_app.py")],
            env={"ACTOR_LOG": str(tandem_home / "actors.jsonl"), "REPLICA": "wk"},
        )
        yield started
    finally:
        for s in started.values():
            s.stop()


def served_by_worker(sidecar: Sidecar, family: str, **labels: str) -> dict[str, float]:
    """The sum of ``family``'s samples matching ``labels``, by worker, from /metrics."""
    port = sidecar.record()["metrics_port"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name != family:
            continue
        for sample in fam.samples:
            if sample.name.endswith("_created"):
                continue
            if all(labels[k] in sample.labels.get(k, "") for k in labels):
                worker = sample.labels.get("worker", "?")
                out[worker] = out.get(worker, 0.0) + sample.value
    return out


def worker_pid(sidecar: Sidecar, index: int) -> int | None:
    """The pid of runtime worker ``index`` under this `tandem run`."""
    for pid, argv in child_processes(sidecar.proc.pid):
        if (
            b"--worker-index" in argv
            and argv[argv.index(b"--worker-index") + 1] == str(index).encode()
        ):
            return pid
    return None


def state_round(sidecar: Sidecar, calls: int) -> None:
    """``calls`` saves, reads and publishes over HTTP, then as many over the gRPC API."""
    with httpx.Client(base_url=sidecar.base, timeout=30) as api:
        for i in range(calls):
            key = f"wk-{uuid.uuid4().hex[:8]}"
            saved = api.post("/v1.0/state/statestore", json=[{"key": key, "value": i}])
            assert saved.status_code == 204, saved.text
            got = api.get(f"/v1.0/state/statestore/{key}")
            assert got.status_code == 200 and got.json() == i
            sent = api.post(f"/v1.0/publish/pubsub/{TOPIC}", json={"n": i, "via": "http"})
            assert sent.status_code == 204, sent.text
    # The SDK first waits for the sidecar's health at DAPR_HTTP_PORT, as under `dapr run`.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "DAPR_HTTP_PORT", sidecar.http_port)
        with DaprClient(address=f"127.0.0.1:{sidecar.grpc_port}") as client:
            for i in range(calls):
                key = f"wk-grpc-{uuid.uuid4().hex[:8]}"
                client.save_state("statestore", key, str(i))
                assert client.get_state("statestore", key).data == str(i).encode()
                client.publish_event("pubsub", TOPIC, json.dumps({"n": i, "via": "grpc"}))


@pytest.mark.parametrize("door", DOORS)
def test_state_and_publish_reach_both_runtime_processes(
    sidecars: dict[str, Sidecar], door: str
) -> None:
    sidecar = sidecars[door]

    state_round(sidecar, 30)

    # Each process counted its own: both served the HTTP API and the gRPC API.
    http = served_by_worker(sidecar, "dapr_http_server_request_count")
    grpc = served_by_worker(
        sidecar, "dapr_grpc_io_server_completed_rpcs", grpc_server_method="SaveState"
    )
    state = served_by_worker(sidecar, "dapr_component_state_count", operation="set")
    published = served_by_worker(sidecar, "dapr_component_pubsub_egress_count", topic=TOPIC)
    for seen in (http, grpc, state, published):
        assert seen.get("0", 0) > 0 and seen.get("1", 0) > 0, seen


def test_subscriptions_and_metadata_stay_with_the_owner(
    sidecars: dict[str, Sidecar], records: Records
) -> None:
    marker = uuid.uuid4().hex
    for door in DOORS:
        sent = httpx.post(
            f"{sidecars[door].base}/v1.0/publish/pubsub/{TOPIC}",
            json={"marker": marker, "door": door},
            timeout=30,
        )
        assert sent.status_code == 204

    got = records.wait_for(
        lambda r: (
            isinstance(r.get("body"), dict)
            and isinstance(data := r["body"].get("data"), dict)
            and data.get("marker") == marker
        ),
        count=2,
        timeout=60,
    )
    assert {r["body"]["data"]["door"] for r in got} == set(DOORS)
    metadata = httpx.get(f"{sidecars['http'].base}/v1.0/metadata", timeout=10).json()
    assert [s["topic"] for s in metadata["subscriptions"]] == [TOPIC]


def test_actors_are_served_by_the_owner(sidecars: dict[str, Sidecar]) -> None:
    actor = f"wk-{uuid.uuid4().hex[:6]}"
    host, caller = sidecars["ext_proc"], sidecars["http"]

    def add(sidecar: Sidecar, by: int) -> httpx.Response:
        return httpx.post(
            f"{sidecar.base}/v1.0/actors/Counter/{actor}/method/Add", json=by, timeout=60
        )

    first = wait_until(
        lambda: (r := add(host, 2)).status_code == 200 and r, 60, "the actor host to answer"
    )
    assert first.json() == 2
    assert add(host, 3).json() == 5
    # From the other sidecar: placement finds the owner of the host sidecar.
    assert add(caller, 1).json() == 6
    metadata = httpx.get(f"{host.base}/v1.0/metadata", timeout=10).json()
    assert metadata["actorRuntime"]["hostReady"] is True


def test_a_removed_component_leaves_every_runtime_process(
    sidecars: dict[str, Sidecar], extra_resources: Path
) -> None:
    sidecar = sidecars["http"]

    def saves(n: int) -> list[httpx.Response]:
        with httpx.Client(base_url=sidecar.base, timeout=30) as api:
            return [
                api.post("/v1.0/state/reloaded", json=[{"key": f"r-{i}", "value": i}])
                for i in range(n)
            ]

    assert {r.status_code for r in saves(20)} == {204}
    before = served_by_worker(sidecar, "dapr_component_state_count", component="reloaded")
    assert before.get("0", 0) > 0 and before.get("1", 0) > 0, before

    (extra_resources / "reloaded.yaml").unlink()

    # Each process reloads on its own; once both have, no call finds the store (20 calls
    # land on one process alone about once in half a million).
    wait_until(lambda: {r.status_code for r in saves(20)} == {400}, 30, "every process to drop it")
    refused = saves(20)
    assert {r.status_code for r in refused} == {400}
    assert {r.json()["errorCode"] for r in refused} == {"ERR_STATE_STORE_NOT_FOUND"}


def test_a_killed_worker_is_restarted_while_the_other_serves(sidecars: dict[str, Sidecar]) -> None:
    sidecar = sidecars["http"]
    old = worker_pid(sidecar, 1)
    assert old is not None

    os.kill(old, signal.SIGKILL)
    # Straight away: every call succeeds (Envoy retries a refused connection on the owner).
    state_round(sidecar, 10)

    new = wait_until(
        lambda: (pid := worker_pid(sidecar, 1)) not in (None, old) and pid, 60, "a new worker 1"
    )
    assert "runtime worker 1 restarted" in wait_until(
        lambda: "runtime worker 1 restarted" in sidecar.text() and sidecar.text(),
        60,
        "the restart to be reported",
    )
    before = served_by_worker(sidecar, "dapr_component_state_count", operation="set").get("1", 0)

    def worker_serves_again() -> bool:
        state_round(sidecar, 3)
        after = served_by_worker(sidecar, "dapr_component_state_count", operation="set")
        return after.get("1", 0) > before

    wait_until(worker_serves_again, 60, f"worker 1 (pid {new}) to serve again", interval=0.2)


def test_an_in_process_store_is_refused_with_workers(tandem_home: Path) -> None:
    folder = tandem_home / "in-memory-resources"
    folder.mkdir()
    (folder / "memory.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: cache}\n"
        "spec: {type: state.in-memory, version: v1}\n"
    )
    sidecar = start_sidecar(
        tandem_home,
        "wk-memory",
        "--resources-path",
        str(folder),
        "--runtime-workers",
        "2",
        wait=False,
    )
    try:
        code = sidecar.proc.wait(timeout=60)
    finally:
        sidecar.stop()

    assert code != 0
    assert "component cache (state.in-memory) keeps its data inside one" in sidecar.text()
