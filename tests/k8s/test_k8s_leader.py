"""Leader election on a Lease: the state machine's transitions, then two electors through
lightkube against the stand-in API server (409 on a stale write, take-over of an expired
lease)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver import ApiServer

from tandem.k8s.leader import LeaderElection, run_election

WALL = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def election(identity: str) -> LeaderElection:
    return LeaderElection(identity, "tandem-controlplane", "tandem-system", 15, 10.0)


def stored(lease: dict[str, Any] | None, version: str) -> dict[str, Any]:
    """What the API server returns after a write."""
    assert lease is not None
    return {**lease, "metadata": {**lease["metadata"], "resourceVersion": version}}


def test_acquire_renew_and_keep() -> None:
    a = election("cp-a")
    step = a.decide(None, now=0.0, wall=WALL)
    assert step.action == "create"
    assert step.lease is not None
    assert step.lease["spec"]["holderIdentity"] == "cp-a"
    lease = stored(step.lease, "1")
    a.written(lease, now=0.0)
    assert a.leading

    renew = a.decide(lease, now=2.0, wall=WALL + dt.timedelta(seconds=2))
    assert renew.action == "update"
    assert renew.lease is not None
    assert renew.lease["metadata"]["resourceVersion"] == "1"
    assert renew.lease["spec"]["renewTime"] > lease["spec"]["renewTime"]
    assert renew.lease["spec"]["leaseTransitions"] == 0


def test_a_held_lease_is_waited_for_then_taken_over_once_expired() -> None:
    a, b = election("cp-a"), election("cp-b")
    lease = stored(a.decide(None, 0.0, WALL).lease, "1")
    a.written(lease, 0.0)

    assert b.decide(lease, now=100.0, wall=WALL).action == "wait"
    # Unchanged for less than its duration (by b's own clock): still a's.
    assert b.decide(lease, now=114.0, wall=WALL).action == "wait"
    takeover = b.decide(lease, now=115.5, wall=WALL)
    assert takeover.action == "update"
    assert takeover.lease is not None
    assert takeover.lease["spec"]["holderIdentity"] == "cp-b"
    assert takeover.lease["spec"]["leaseTransitions"] == 1
    b.written(stored(takeover.lease, "2"), 115.5)
    assert b.leading
    assert b.transitions == 1  # the new placement epoch

    # a, back from a pause, reads b's lease: it is not leading any more.
    assert a.decide(stored(takeover.lease, "2"), now=120.0, wall=WALL).action == "wait"
    assert not a.leading


def test_a_renewed_lease_is_not_taken_over() -> None:
    a, b = election("cp-a"), election("cp-b")
    lease = stored(a.decide(None, 0.0, WALL).lease, "1")
    assert b.decide(lease, now=0.0, wall=WALL).action == "wait"
    renewed = stored(a.decide(lease, 10.0, WALL + dt.timedelta(seconds=10)).lease, "2")
    # b saw a change at 14: the duration counts from there.
    assert b.decide(renewed, now=14.0, wall=WALL).action == "wait"
    assert b.decide(renewed, now=28.0, wall=WALL).action == "wait"
    assert b.decide(renewed, now=29.5, wall=WALL).action == "update"


def test_a_leader_that_cannot_renew_steps_down_before_its_lease_expires() -> None:
    a = election("cp-a")
    a.written(stored(a.decide(None, 0.0, WALL).lease, "1"), 0.0)
    a.failed(now=5.0)
    assert a.leading
    a.conflict(now=10.5)  # 409: another replica wrote since we read
    assert not a.leading


def test_a_released_lease_is_taken_at_once() -> None:
    b = election("cp-b")
    released = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "tandem-controlplane",
            "namespace": "tandem-system",
            "resourceVersion": "7",
        },
        "spec": {"holderIdentity": "", "leaseDurationSeconds": 15, "leaseTransitions": 4},
    }
    step = b.decide(released, now=0.0, wall=WALL)
    assert step.action == "update"
    assert step.lease is not None
    assert step.lease["spec"]["leaseTransitions"] == 5


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


async def test_two_replicas_elect_one_leader_and_the_other_takes_over(
    api: ApiServer, tmp_path: Path
) -> None:
    from lightkube import AsyncClient, KubeConfig

    config = KubeConfig.from_file(api.kubeconfig(tmp_path / "kubeconfig"))
    clients = [AsyncClient(config=config), AsyncClient(config=config)]
    elections = [
        LeaderElection(name, "tandem-controlplane", "tandem-system", 2, 1.0)
        for name in ("cp-a", "cp-b")
    ]
    seen: list[tuple[str, bool]] = []
    tasks = [
        asyncio.create_task(
            run_election(
                c, e, lambda leading, e=e: seen.append((e.identity, leading)), retry_period=0.1
            )
        )
        for c, e in zip(clients, elections, strict=True)
    ]

    async def until(what: str, ready: Any) -> None:
        end = time.monotonic() + 20
        while not ready():
            assert time.monotonic() < end, what
            await asyncio.sleep(0.05)

    try:
        await until("a leader", lambda: any(e.leading for e in elections))
        await asyncio.sleep(0.5)  # several rounds of both: still one leader
        assert sum(e.leading for e in elections) == 1
        [leader] = [i for i, e in enumerate(elections) if e.leading]
        # The leader's process dies (no release): the other takes over once it expired.
        tasks[leader].cancel()
        other = elections[1 - leader]
        await until("the take-over", lambda: other.leading)
        lease = api.get("Lease", "tandem-system", "tandem-controlplane")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == other.identity
        assert lease["spec"]["leaseTransitions"] == 1
        assert other.transitions == 1
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in clients:
            await client.close()
    assert (other.identity, True) in seen
    assert any(r.startswith("PUT /apis/coordination.k8s.io/v1/namespaces/") for r in api.requests)


async def test_a_follower_refuses_placement_calls_and_serves_them_once_leading(
    tmp_path: Path,
) -> None:
    import grpc

    from tandem.k8s.ha import LeaderOnly
    from tandem.placement import wire
    from tandem.placement.service import PlacementService
    from tandem.xds.controlplane import ControlPlane

    leading = False
    placement = PlacementService(tmp_path)
    await placement.start()
    control_plane = ControlPlane(
        services=(placement,), interceptors=(LeaderOnly(lambda: leading),), settle_seconds=0
    )
    address = await control_plane.start()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reminders = wire.unary(channel, wire.REMINDERS, "List")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await reminders({"actorType": "cart"}, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "not the leader" in str(refused.value.details())
            leading = True
            assert await reminders({"actorType": "cart"}, timeout=5) == {"reminders": []}
    finally:
        await control_plane.stop()
        await placement.stop()
