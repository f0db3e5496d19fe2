"""The runtime's policy runner: retries, per-attempt timeouts and Dapr's circuit breaker."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tandem.blocks.resiliency import BreakerState, CircuitOpenError, Resilient, backoff
from tandem.resources.resiliency import CircuitBreakerPolicy, Policy, RetryPolicy
from tandem.resources.trip import Trip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def runner(policy: Policy, clock: Clock) -> Resilient:
    return Resilient(policy, "store", sleep=clock.sleep, clock=clock)


class Flaky:
    def __init__(self, failures: int, exc: type[Exception] = ConnectionError) -> None:
        self.failures, self.calls, self.exc = failures, 0, exc

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc("down")
        return "ok"


CONSTANT = RetryPolicy(policy="constant", duration=timedelta(milliseconds=200), max_retries=3)


async def test_retries_until_success_with_the_constant_wait() -> None:
    clock = Clock()
    flaky = Flaky(2)
    assert await runner(Policy(retry=CONSTANT), clock).call(flaky) == "ok"
    assert (flaky.calls, clock.slept) == (3, [0.2, 0.2])


async def test_gives_up_after_max_retries_with_the_last_error() -> None:
    flaky = Flaky(10)
    with pytest.raises(ConnectionError):
        await runner(Policy(retry=CONSTANT), Clock()).call(flaky)
    assert flaky.calls == 4


async def test_an_answer_that_is_not_a_failure_is_raised_at_once() -> None:
    flaky = Flaky(1, KeyError)
    with pytest.raises(KeyError):
        await runner(Policy(retry=CONSTANT), Clock()).call(
            flaky, is_failure=lambda e: not isinstance(e, KeyError)
        )
    assert flaky.calls == 1


async def test_each_attempt_has_the_timeout() -> None:
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)
        return "ok"

    policy = Policy(timeout=timedelta(milliseconds=50), retry=CONSTANT)
    assert await runner(policy, Clock()).call(slow) == "ok"
    assert calls == 2


def test_exponential_backoff_follows_dapr_and_is_capped() -> None:
    exp = RetryPolicy(policy="exponential", max_interval=timedelta(seconds=1), max_retries=-1)
    assert [backoff(exp, n, rnd=lambda: 0.5) for n in (1, 2, 3, 10)] == [0.5, 0.75, 1.0, 1.0]


async def test_breaker_opens_after_trip_rejects_fast_then_half_opens_and_closes() -> None:
    clock = Clock()
    cb = CircuitBreakerPolicy(
        max_requests=1, timeout=timedelta(seconds=10), trip=Trip.compile("consecutiveFailures > 1")
    )
    r = runner(Policy(circuit_breaker=cb), clock)
    failing = Flaky(100)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await r.call(failing)
    assert r.breaker is not None and r.breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await r.call(failing)
    assert failing.calls == 2
    clock.now += 10
    assert await r.call(Flaky(0)) == "ok"  # the half-open probe succeeds
    assert r.breaker.state is BreakerState.CLOSED


async def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = Clock()
    cb = CircuitBreakerPolicy(timeout=timedelta(seconds=5), trip=Trip.compile("totalFailures >= 1"))
    r = runner(Policy(circuit_breaker=cb), clock)
    with pytest.raises(ConnectionError):
        await r.call(Flaky(1))
    clock.now += 5
    with pytest.raises(ConnectionError):
        await r.call(Flaky(1))
    assert r.breaker is not None and r.breaker.state is BreakerState.OPEN
    assert r.breaker.reopens_in() == 5


async def test_an_open_breaker_is_not_retried() -> None:
    clock = Clock()
    cb = CircuitBreakerPolicy(timeout=timedelta(seconds=60), trip=Trip.compile("totalFailures > 1"))
    r = runner(Policy(retry=CONSTANT, circuit_breaker=cb), clock)
    failing = Flaky(100)
    with pytest.raises(CircuitOpenError):
        await r.call(failing)
    assert failing.calls == 2


async def test_each_retry_timeout_and_breaker_opening_is_reported_as_an_activation() -> None:
    seen: list[str] = []
    calls = 0

    async def slow_then_down() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(5)  # the attempt's timeout ends it
        raise ConnectionError("down")

    cb = CircuitBreakerPolicy(timeout=timedelta(seconds=60), trip=Trip.compile("totalFailures > 1"))
    policy = Policy(timeout=timedelta(milliseconds=50), retry=CONSTANT, circuit_breaker=cb)
    clock = Clock()
    r = Resilient(policy, "store", sleep=clock.sleep, clock=clock, on_activation=seen.append)
    with pytest.raises(CircuitOpenError):
        await r.call(slow_then_down)
    # Attempt 1 times out (retried), attempt 2 fails and trips the breaker (retried), the
    # third is refused by the open breaker.
    assert seen == ["timeout", "retry", "circuitbreaker", "retry"]
