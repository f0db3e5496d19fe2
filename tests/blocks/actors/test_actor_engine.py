"""The actor engine's promises: one turn at a time per actor, FIFO, reentrancy as Dapr
has it, deactivation on idle, rebalance and drain, and in-memory timers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from tandem.blocks.actors.config import ActorConfig, ActorConfigError, parse_actor_config
from tandem.blocks.actors.engine import REENTRANCY_HEADER, ActorEngine, NotOwner, TimerSpec
from tandem.blocks.app_channel import AppResponse
from tandem.blocks.errors import DaprError


class RecordingApp:
    """An actor app that logs enter/exit per call and can call back into the engine."""

    def __init__(self) -> None:
        self.engine: ActorEngine | None = None
        self.log: list[tuple[str, str, str]] = []  # (event, actor id, method)
        self.deactivated: list[str] = []
        self.callbacks: list[tuple[str, str]] = []
        self.delay = 0.0
        self.gate: asyncio.Event | None = None
        self.max_overlap: dict[str, int] = {}
        self._inside: dict[str, int] = {}

    async def invoke(self, actor_type, actor_id, method, body, headers: Mapping[str, str]):
        self._inside[actor_id] = self._inside.get(actor_id, 0) + 1
        self.max_overlap[actor_id] = max(self.max_overlap.get(actor_id, 0), self._inside[actor_id])
        self.log.append(("enter", actor_id, method))
        try:
            if self.gate is not None and method == "wait":
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if method.startswith("call:"):  # actor A calls actor B (carrying the chain id)
                target = method[len("call:") :]
                next_method = "ping" if "/" not in target else target.split("/", 1)[1]
                target = target.split("/", 1)[0]
                assert self.engine is not None
                fwd = {k: v for k, v in headers.items() if k == REENTRANCY_HEADER}
                await self.engine.invoke("T", target, next_method, b"", fwd)
            return AppResponse(200, f"{actor_id}:{method}".encode())
        finally:
            self._inside[actor_id] -= 1
            self.log.append(("exit", actor_id, method))

    async def deactivate(self, actor_type, actor_id):
        self.deactivated.append(actor_id)

    async def callback(self, actor_type, actor_id, kind, name, payload):
        self.callbacks.append((kind, name))
        return AppResponse(200, b"")


async def until(predicate, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


class Placed:
    def __init__(self) -> None:
        self.lost: set[str] = set()

    def serves(self, actor_type, actor_id):
        return actor_id not in self.lost


def engine_waiters(engine: ActorEngine) -> int:
    return sum(len(act.lock._waiters) for act in engine._active.values())


def engine_for(config_doc, app=None, placement=None):
    app = app or RecordingApp()
    engine = ActorEngine(parse_actor_config(config_doc), app, placement or Placed())
    app.engine = engine
    return engine, app


async def test_fifty_concurrent_calls_to_one_actor_never_overlap():
    engine, app = engine_for({"entities": ["T"]})
    app.delay = 0.001
    results = await asyncio.gather(*(engine.invoke("T", "a", f"m{i}", b"", {}) for i in range(50)))
    assert [r.body for r in results] == [f"a:m{i}".encode() for i in range(50)]
    assert app.max_overlap["a"] == 1
    # FIFO: turns ran in the order the calls arrived.
    assert [m for e, _, m in app.log if e == "enter"] == [f"m{i}" for i in range(50)]


async def test_different_actors_run_in_parallel():
    engine, app = engine_for({"entities": ["T"]})
    app.gate = asyncio.Event()
    calls = [asyncio.create_task(engine.invoke("T", i, "wait", b"", {})) for i in "abc"]
    # All three are inside the app at once, though none has finished.
    await until(lambda: len(app.log) == 3, "three actors inside the app together")
    assert {a for e, a, _ in app.log if e == "enter"} == {"a", "b", "c"}
    app.gate.set()
    await asyncio.gather(*calls)


async def test_reentrant_chain_a_b_a_completes():
    engine, app = engine_for({"entities": ["T"], "reentrancy": {"enabled": True}})
    resp = await asyncio.wait_for(engine.invoke("T", "a", "call:b/call:a", b"", {}), 5)
    assert resp.status == 200
    assert [(e, a) for e, a, _ in app.log] == [
        ("enter", "a"),
        ("enter", "b"),
        ("enter", "a"),
        ("exit", "a"),
        ("exit", "b"),
        ("exit", "a"),
    ]


async def test_without_reentrancy_a_b_a_deadlocks_until_the_caller_gives_up():
    engine, app = engine_for({"entities": ["T"]})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(engine.invoke("T", "a", "call:b/call:a", b"", {}), 0.5)
    # The actor is usable again once the chain was abandoned.
    assert (await asyncio.wait_for(engine.invoke("T", "a", "ping", b"", {}), 5)).status == 200


async def test_reentrancy_past_max_stack_depth_is_refused():
    engine, app = engine_for(
        {"entities": ["T"], "reentrancy": {"enabled": True, "maxStackDepth": 2}}
    )
    with pytest.raises(DaprError) as err:
        await engine.invoke("T", "a", "call:a/call:a", b"", {})
    assert err.value.error_code == "ERR_ACTOR_STACK_DEPTH"


async def test_a_type_not_hosted_is_refused():
    engine, _ = engine_for({"entities": ["T"]})
    with pytest.raises(DaprError):
        await engine.invoke("Other", "a", "m", b"", {})


async def test_rebalance_drains_then_deactivates_only_what_moved():
    placement = Placed()
    engine, app = engine_for(
        {"entities": ["T"], "drainOngoingCallTimeout": "5s"}, placement=placement
    )
    app.gate = asyncio.Event()
    for i in "ab":
        await engine.invoke("T", i, "ping", b"", {})
    busy = asyncio.create_task(engine.invoke("T", "a", "wait", b"", {}))
    await until(lambda: ("enter", "a", "wait") in app.log, "the long call to start")
    placement.lost.add("a")
    rebalance = asyncio.create_task(engine.rebalance())
    await asyncio.sleep(0.1)  # a window in which nothing may happen: the turn is in flight
    assert not rebalance.done() and app.deactivated == []
    app.gate.set()
    assert await rebalance == 1
    assert (await busy).status == 200
    assert app.deactivated == ["a"] and engine.active_ids("T") == ["b"]
    with pytest.raises(NotOwner):
        await engine.invoke("T", "a", "ping", b"", {})


async def test_a_call_queued_behind_a_move_is_refused_not_run():
    placement = Placed()
    engine, app = engine_for({"entities": ["T"]}, placement=placement)
    app.gate = asyncio.Event()
    first = asyncio.create_task(engine.invoke("T", "a", "wait", b"", {}))
    await until(lambda: ("enter", "a", "wait") in app.log, "the first call to start")
    queued = asyncio.create_task(engine.invoke("T", "a", "late", b"", {}))
    await until(lambda: engine_waiters(engine) == 1, "the second call to queue")
    placement.lost.add("a")
    app.gate.set()
    await first
    with pytest.raises(NotOwner):
        await queued
    assert ("enter", "a", "late") not in app.log


async def test_idle_actors_are_deactivated_busy_ones_are_not():
    now = [0.0]
    app = RecordingApp()
    engine = ActorEngine(
        parse_actor_config({"entities": ["T"], "actorIdleTimeout": "10s"}),
        app,
        Placed(),
        clock=lambda: now[0],
    )
    await engine.invoke("T", "old", "m", b"", {})
    now[0] = 5.0
    await engine.invoke("T", "new", "m", b"", {})
    now[0] = 12.0
    assert await engine.deactivate_idle() == 1
    assert app.deactivated == ["old"] and engine.active_ids("T") == ["new"]


async def test_timer_fires_period_times_and_stops_with_the_activation():
    engine, app = engine_for({"entities": ["T"]})
    await engine.create_timer("T", "a", TimerSpec("t", 0.0, 0.05, 3, None, b"{}"))
    await until(lambda: len(app.callbacks) >= 3, "three timer fires")
    await asyncio.sleep(0.2)  # a window for a fourth fire that must not come
    assert app.callbacks == [("timer", "t")] * 3
    await engine.create_timer("T", "a", TimerSpec("forever", 0.0, 0.02, None, None, b"{}"))
    await engine.deactivate("T", "a")
    fired = len(app.callbacks)
    await asyncio.sleep(0.1)
    assert len(app.callbacks) == fired  # no timer outlives its activation


def test_config_entities_config_overrides_per_type():
    cfg = parse_actor_config(
        {
            "entities": ["A", "B"],
            "actorIdleTimeout": "1h",
            "reentrancy": {"enabled": True, "maxStackDepth": 8},
            "entitiesConfig": [
                {"entities": ["B"], "actorIdleTimeout": "1m", "reentrancy": {"enabled": False}}
            ],
        }
    )
    a, b = cfg.settings("A"), cfg.settings("B")
    assert a is not None and b is not None
    assert (a.idle_timeout.total_seconds(), a.reentrancy, a.max_stack_depth) == (3600, True, 8)
    assert (b.idle_timeout.total_seconds(), b.reentrancy) == (60, False)
    assert parse_actor_config({}) == ActorConfig.none()


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"entities": "T"}, "entities"),
        ({"entities": ["T"], "actorIdleTimeout": "soon"}, "actorIdleTimeout"),
        ({"entities": ["T"], "reentrancy": {"maxStackDepth": 0}}, "maxStackDepth"),
        (
            {"entities": ["T"], "entitiesConfig": [{"entities": ["U"]}]},
            "entitiesConfig[0].entities",
        ),
    ],
)
def test_bad_actor_config_names_the_field(doc, field):
    with pytest.raises(ActorConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_actor_config(doc)
