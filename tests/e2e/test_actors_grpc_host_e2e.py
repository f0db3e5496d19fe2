"""Actors hosted over the gRPC actor stream (the SDK's ``ActorGrpcHost``: no app HTTP
server at all), called with ``ActorProxy`` from another sidecar: methods and state, a
reminder and a timer all arrive over the stream."""

from __future__ import annotations

import sys

import httpx
import pytest
from actors_harness import client
from harness import APPS, json_lines, start_sidecar, wait_until

from tandem.cli.ports import free_port


@pytest.fixture(scope="module")
def mesh(tandem_home):
    log = tandem_home / "grpc-actors.jsonl"
    host = start_sidecar(
        tandem_home,
        "grpc-counter-host",
        "--app-port",
        str(free_port()),
        "--app-protocol",
        "grpc",
        command=[sys.executable, str(APPS / "actor_grpc_app.py")],
        env={"ACTOR_LOG": str(log), "REPLICA": "grpc-host"},
    )
    caller = start_sidecar(tandem_home, "grpc-actor-caller")
    yield host, caller, log
    for s in (caller, host):
        s.stop()


def test_methods_state_reminders_and_timers_over_the_actor_stream(mesh):
    host, caller, log = mesh
    # The stream registers the types a moment after the app starts: wait for placement.
    wait_until(
        lambda: any(
            a["type"] == "Counter"
            for a in httpx.get(f"{host.base}/v1.0/metadata", timeout=10).json().get("actors", [])
        ),
        30,
        "the host to register Counter over its actor stream",
    )
    assert client(caller, "add", "gs-1", "4", "2") == [4, 8]
    r = httpx.get(f"{host.base}/v1.0/actors/Counter/gs-1/state/n", timeout=10)
    assert r.status_code == 200 and r.json() == 8
    assert client(caller, "slow-burst", "gs-2", "5", "10") == ["grpc-host"] * 5

    client(caller, "remind", "gs-3", "300")
    wait_until(
        lambda: (
            sum(1 for e in json_lines(log) if e["event"] == "reminder" and e["id"] == "gs-3") >= 2
        ),
        20,
        "reminders over the stream",
    )
    assert all(e["state"] == "payload" for e in json_lines(log) if e["event"] == "reminder")
    client(caller, "forget", "gs-3")
    client(caller, "tick", "gs-4", "200")
    wait_until(
        lambda: sum(1 for e in json_lines(log) if e["event"] == "timer" and e["id"] == "gs-4") >= 2,
        20,
        "timers over the stream",
    )
