"""The placement stream and the reminder API over real gRPC (a Unix socket): tables commit,
actors split between hosts without overlap, reminders fire at the owner, and a restarted
control plane takes a new epoch and waits out the old leases."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from tandem.placement import wire
from tandem.placement.client import PlacementClient
from tandem.placement.service import WORKFLOW_TIMER_KIND, PlacementService

IDS = [f"id-{i}" for i in range(100)]
LEASE = 1.0


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class ControlPlane:
    def __init__(self, home) -> None:
        self.home = home
        self.target = f"unix://{home}/cp.sock"
        self.service: PlacementService | None = None
        self.server: grpc.aio.Server | None = None

    async def start(self) -> PlacementService:
        self.service = PlacementService(self.home, lease=LEASE, margin=0.2)
        await self.service.start()
        self.server = grpc.aio.server()
        self.service.add_to_server(self.server)
        self.server.add_insecure_port(self.target)
        await self.server.start()
        return self.service

    async def stop(self) -> None:
        assert self.server is not None and self.service is not None
        await self.server.stop(0)
        await self.service.stop()


class Host:
    """A runtime's placement end with a minimal actor engine: a set of active actors."""

    def __init__(self, cp: ControlPlane, name: str, types: tuple[str, ...] = ("T",)) -> None:
        self.name = name
        self.active: set[str] = set()
        self.fired: list[tuple[str, str]] = []
        self.hang = False  # fires never finish (a host that dies mid-firing)
        self.failures = 0  # fires to fail before one succeeds
        self.started: list[str] = []
        self.client = PlacementClient(
            cp.target,
            host=name,
            app_id="app",
            types=list(types),
            rebalance=self._rebalance,
            lost=self._lost,
            fire=self._fire,
        )
        self.task = asyncio.create_task(self.client.run())

    def serves(self, actor_id: str) -> bool:
        return self.client.serves("T", actor_id)

    async def _rebalance(self) -> None:
        self.active = {a for a in self.active if self.serves(a)}

    async def _lost(self) -> None:
        self.active.clear()

    async def _fire(self, actor_type, actor_id, name, payload) -> str:
        self.started.append(name)
        if self.hang:
            await asyncio.Event().wait()
        if self.failures:
            self.failures -= 1
            return "failed"
        if not self.serves(actor_id):
            return "unroutable"
        self.fired.append((actor_id, name))
        return "delivered"

    def call(self, actor_id: str) -> bool:
        if self.serves(actor_id):
            self.active.add(actor_id)
            return True
        return False

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def assert_no_overlap(*hosts: Host) -> None:
    for i, a in enumerate(hosts):
        for b in hosts[i + 1 :]:
            assert not (a.active & b.active), (a.name, b.name, a.active & b.active)


async def test_tables_split_actors_reminders_fire_at_the_owner_and_restarts_wait(tmp_path):
    cp = ControlPlane(tmp_path)
    service = await cp.start()
    a = Host(cp, "a")
    try:
        await until(lambda: all(a.serves(i) for i in IDS), "a to serve every actor alone")
        for i in IDS:
            a.call(i)

        b = Host(cp, "b")
        await until(
            lambda: any(b.serves(i) for i in IDS) and all(a.serves(i) or b.serves(i) for i in IDS),
            "b to take its share",
        )
        assert not any(a.serves(i) and b.serves(i) for i in IDS)
        assert_no_overlap(a, b)  # a let go of what moved before b could take it
        for i in IDS:
            a.call(i) or b.call(i)
        assert a.active and b.active and len(a.active | b.active) == len(IDS)

        # A reminder on an actor b owns fires three times, at b only.
        owned_by_b = next(i for i in IDS if b.serves(i))
        register = wire.unary(grpc.aio.insecure_channel(cp.target), wire.REMINDERS, "Register")
        answer = await register(
            {"actorType": "T", "actorId": owned_by_b, "name": "r", "period": "R3/PT0.2S"}
        )
        assert answer == {}
        await until(lambda: len(b.fired) == 3, "three reminder fires at b")
        assert b.fired == [(owned_by_b, "r")] * 3 and a.fired == []
        # overwrite: false on an existing reminder is refused
        await register({"actorType": "T", "actorId": "x", "name": "once", "dueTime": "1h"})
        again = await register(
            {"actorType": "T", "actorId": "x", "name": "once", "dueTime": "1h", "overwrite": False}
        )
        assert again["error"] == "exists"

        # b goes away: once its lease has run out, a serves everything again.
        await b.stop()
        await until(lambda: all(a.serves(i) for i in IDS), "a to take b's actors back")

        # The control plane restarts: a new epoch, and a waits out the old leases.
        old_epoch = service.epoch
        await cp.stop()
        await until(lambda: not a.client.connected.is_set(), "a to see the stream break")
        assert not any(a.serves(i) for i in IDS) and not a.active
        service = await cp.start()
        assert service.epoch == old_epoch + 1
        await until(lambda: a.client.connected.is_set(), "a to reconnect")
        started = asyncio.get_running_loop().time()
        await until(lambda: all(a.serves(i) for i in IDS), "a to serve again after the grace")
        assert asyncio.get_running_loop().time() - started >= LEASE * 0.9
        assert a.client.version is not None and a.client.version.epoch == service.epoch
    finally:
        await a.stop()
        await cp.stop()


async def test_a_host_changes_its_types_on_its_open_stream(tmp_path):
    """An actor stream registering types (or a workflow worker connecting) changes what a
    host serves without reopening its placement stream, so nothing waits out a lease."""
    cp = ControlPlane(tmp_path)
    service = await cp.start()
    a, b = Host(cp, "a"), Host(cp, "b", types=())
    try:
        await until(lambda: b.client.committed.is_set(), "b to route by a committed table")
        assert all(a.serves(i) for i in IDS) and not any(b.serves(i) for i in IDS)
        stream = service._streams["b"]
        b.client.set_types(["T"])
        await until(lambda: any(b.serves(i) for i in IDS), "b to take its share")
        assert not any(a.serves(i) and b.serves(i) for i in IDS)
        b.client.set_types([])
        await until(lambda: all(a.serves(i) for i in IDS), "a to serve everything again")
        assert not any(b.serves(i) for i in IDS)
        assert service._streams["b"] is stream and b.client.committed.is_set()
    finally:
        await a.stop()
        await b.stop()
        await cp.stop()


async def test_a_firing_in_flight_on_a_host_that_dies_goes_to_the_next_owner_at_once(tmp_path):
    """Without this the firing would wait out the scheduler's 30 s delivery timeout."""
    cp = ControlPlane(tmp_path)
    await cp.start()
    a = Host(cp, "a")
    a.hang = True
    b: Host | None = None
    try:
        await until(lambda: all(a.serves(i) for i in IDS), "a to serve every actor")
        register = wire.unary(grpc.aio.insecure_channel(cp.target), wire.REMINDERS, "Register")
        await register({"actorType": "T", "actorId": "id-1", "name": "r", "dueTime": "0s"})
        await until(lambda: a.started == ["r"], "the firing to reach a")
        b = Host(cp, "b")
        await a.stop()
        await until(lambda: b.fired == [("id-1", "r")], "b to get the firing", timeout=10)
    finally:
        await a.stop()
        if b is not None:
            await b.stop()
        await cp.stop()


async def test_a_workflow_timer_is_retried_past_a_reminders_three_retries(tmp_path):
    cp = ControlPlane(tmp_path)
    await cp.start()
    a = Host(cp, "a")
    a.failures = 4
    try:
        await until(lambda: all(a.serves(i) for i in IDS), "a to serve every actor")
        register = wire.unary(grpc.aio.insecure_channel(cp.target), wire.REMINDERS, "Register")
        request = {"actorType": "T", "actorId": "id-1", "name": "t", "dueTime": "0s"}
        await register({**request, "kind": WORKFLOW_TIMER_KIND})
        await until(lambda: a.fired == [("id-1", "t")], "the timer to land", timeout=20)
        assert a.started == ["t"] * 5
    finally:
        await a.stop()
        await cp.stop()


@pytest.mark.parametrize("bad", [{}, {"renew": 1}, {"hello": {"types": ["T"]}}])
async def test_a_stream_must_start_with_hello(tmp_path, bad):
    cp = ControlPlane(tmp_path)
    await cp.start()
    try:
        async with grpc.aio.insecure_channel(cp.target) as channel:
            call = channel.stream_stream(
                wire.CONNECT, request_serializer=wire.encode, response_deserializer=wire.decode
            )()
            await call.write(bad)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await cp.stop()
