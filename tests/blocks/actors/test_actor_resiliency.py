"""Resiliency targets.actors around actor calls: retries until the actor answers, a per-
attempt timeout, and a breaker that stops calling a failing actor for its timeout."""

from __future__ import annotations

import asyncio

import pytest

from tandem.blocks.actors.config import parse_actor_config
from tandem.blocks.actors.engine import ActorEngine
from tandem.blocks.actors.resiliency import ActorPolicies
from tandem.blocks.actors.service import ActorService, ActorSettings
from tandem.blocks.app_channel import AppResponse
from tandem.blocks.errors import DaprError
from tandem.placement.table import Version
from tandem.resources.loader import parse_text

RESILIENCY = """
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: actors}
spec:
  policies:
    timeouts: {short: 200ms}
    retries:
      twice: {policy: constant, duration: 10ms, maxRetries: 2}
    circuitBreakers:
      cb: {maxRequests: 1, timeout: 300ms, trip: consecutiveFailures >= 3}
  targets:
    actors:
      Flaky: {timeout: short, retry: twice}
      Broken: {circuitBreaker: cb, circuitBreakerScope: id}
"""


class App:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.fail_first = 2

    async def invoke(self, actor_type, actor_id, method, body, headers):
        n = self.calls[actor_id] = self.calls.get(actor_id, 0) + 1
        if method == "hang":
            await asyncio.sleep(5)
        if actor_type == "Broken" or n <= self.fail_first:
            return AppResponse(500, b"boom")
        return AppResponse(200, b"ok")

    async def deactivate(self, actor_type, actor_id):
        pass

    async def callback(self, *args):
        return AppResponse(200, b"")


class Here:
    """Placement with this one host owning everything."""

    committed = asyncio.Event()
    version = Version(1, 1)

    def serves(self, actor_type, actor_id):
        return True

    def route(self, actor_type, actor_id):
        return "me"


def service_with(app: App) -> ActorService:
    resiliencies = [r for r in parse_text(RESILIENCY, "res.yaml")]
    svc = ActorService(
        ActorSettings(host="me", call_deadline=1.0),
        state=None,
        placement=Here(),
        forwarder=None,
        reminders=None,
        policies=ActorPolicies(resiliencies),
    )
    svc.attach(ActorEngine(parse_actor_config({"entities": ["Flaky", "Broken"]}), app, svc))
    Here.committed.set()
    return svc


async def test_retries_until_the_actor_answers():
    app = App()
    resp = await service_with(app).invoke("Flaky", "a", "m", b"", {})
    assert resp.body == b"ok" and app.calls["a"] == 3


async def test_each_attempt_has_the_policy_timeout():
    app = App()
    app.fail_first = 0
    started = asyncio.get_running_loop().time()
    with pytest.raises(DaprError) as err:
        await service_with(app).invoke("Flaky", "slow", "hang", b"", {})
    assert "timed out" in str(err.value)
    # three attempts of 200 ms (two retries), not the 5 s the actor would take
    assert asyncio.get_running_loop().time() - started < 3
    assert app.calls["slow"] == 3


async def test_breaker_stops_calling_a_failing_actor_for_its_timeout():
    app = App()
    svc = service_with(app)
    for _ in range(3):
        with pytest.raises(DaprError):
            await svc.invoke("Broken", "b", "m", b"", {})
    assert app.calls["b"] == 3
    with pytest.raises(DaprError) as err:
        await svc.invoke("Broken", "b", "m", b"", {})
    assert "circuit breaker is open" in str(err.value)
    assert app.calls["b"] == 3  # not called while open
    # another id has its own breaker (circuitBreakerScope: id)
    with pytest.raises(DaprError):
        await svc.invoke("Broken", "other", "m", b"", {})
    assert app.calls["other"] == 1
    await asyncio.sleep(0.35)
    with pytest.raises(DaprError):
        await svc.invoke("Broken", "b", "m", b"", {})
    assert app.calls["b"] == 4  # half-open: one probe reaches the actor again
