"""Resiliency in the runtime: one resolved :class:`~tandem.resources.resiliency.Policy`
applied around an async call (component calls, deliveries, actor calls).

Dapr's order: the retry loop wraps the circuit breaker, which wraps each attempt's
timeout. A call refused by an open breaker is not retried (it would be refused again).
Invocation is not here: Envoy enforces the same Policy objects for it
(``tandem.xds.translate.resiliency``).
"""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from tandem.resources.resiliency import CircuitBreakerPolicy, Policy, RetryPolicy

T = TypeVar("T")
C = TypeVar("C")

# Dapr's exponential back-off: from 500 ms, × 1.5 each retry, ±50 % jitter, capped.
EXPONENTIAL_INITIAL = 0.5
EXPONENTIAL_FACTOR = 1.5
EXPONENTIAL_JITTER = 0.5


class CircuitOpenError(Exception):
    """The target's circuit breaker is open: the call was not attempted."""

    def __init__(self, target: str) -> None:
        super().__init__(f"circuit breaker is open for {target}")
        self.target = target


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(slots=True)
class CircuitBreaker:
    """Dapr's breaker: closed until ``trip`` holds, open for ``timeout``, then half-open
    letting ``maxRequests`` probes through; they all succeed → closed, one fails → open."""

    policy: CircuitBreakerPolicy
    target: str
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    requests: int = 0
    total_failures: int = 0
    consecutive_failures: int = 0
    _opened_at: float = 0.0
    _window_start: float | None = None
    _probes: int = 0
    _probe_successes: int = 0
    # Told each time the breaker opens (Dapr's resiliency activation metric).
    on_open: Callable[[], None] | None = None

    def _reset_counts(self) -> None:
        self.requests = self.total_failures = self.consecutive_failures = 0
        self._window_start = self.clock()

    def reopens_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 if not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.timeout.total_seconds() - self.clock())

    def before(self) -> None:
        """Admit one call or raise :class:`CircuitOpenError`."""
        now = self.clock()
        if self.state is BreakerState.OPEN:
            if self.reopens_in() > 0:
                raise CircuitOpenError(self.target)
            self.state = BreakerState.HALF_OPEN
            self._probes = self._probe_successes = 0
        if self.state is BreakerState.HALF_OPEN:
            if self._probes >= max(1, self.policy.half_open_probes):
                raise CircuitOpenError(self.target)
            self._probes += 1
            return
        interval = self.policy.interval.total_seconds()
        if self._window_start is None:
            self._window_start = now
        elif interval > 0 and now - self._window_start >= interval:
            self._reset_counts()  # Dapr clears the counts every interval while closed
        self.requests += 1

    def record(self, success: bool) -> None:
        if self.state is BreakerState.HALF_OPEN:
            if not success:
                self._open()
                return
            self._probe_successes += 1
            if self._probe_successes >= max(1, self.policy.half_open_probes):
                self.state = BreakerState.CLOSED
                self._reset_counts()
            return
        if self.state is BreakerState.OPEN:
            return  # a call admitted before the breaker opened
        if success:
            self.consecutive_failures = 0
            return
        self.total_failures += 1
        self.consecutive_failures += 1
        if self.policy.trip.evaluate(
            requests=self.requests,
            total_failures=self.total_failures,
            consecutive_failures=self.consecutive_failures,
        ):
            self._open()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self.clock()
        self._reset_counts()
        if self.on_open is not None:
            self.on_open()


def backoff(retry: RetryPolicy, attempt: int, rnd: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based)."""
    if retry.policy == "constant":
        return retry.duration.total_seconds()
    wait = EXPONENTIAL_INITIAL * EXPONENTIAL_FACTOR ** (attempt - 1)
    wait = min(wait, retry.max_interval.total_seconds())
    jitter = 1 - EXPONENTIAL_JITTER + 2 * EXPONENTIAL_JITTER * rnd()
    return min(wait * jitter, retry.max_interval.total_seconds())


def _always(_: BaseException) -> bool:
    return True


# Told the kind of each policy activation: "retry", "timeout" or "circuitbreaker".
Activations = Callable[[str], None]


@dataclass(slots=True)
class Resilient:
    """A policy made runnable for one target; keeps that target's breaker between calls."""

    policy: Policy
    target: str
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    on_activation: Activations | None = None
    breaker: CircuitBreaker | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.policy.circuit_breaker is not None:
            on_open = self.on_activation
            self.breaker = CircuitBreaker(
                self.policy.circuit_breaker,
                self.target,
                self.clock,
                on_open=(lambda: on_open("circuitbreaker")) if on_open else None,
            )

    def _activated(self, kind: str) -> None:
        if self.on_activation is not None:
            self.on_activation(kind)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        is_failure: Callable[[BaseException], bool] = _always,
    ) -> T:
        """Run ``fn`` under the policy. ``is_failure`` tells a real failure (retried,
        counted by the breaker) from an answer that merely is an exception (an ETag
        mismatch: the caller's error, raised at once)."""
        retry = self.policy.retry
        timeout = self.policy.timeout.total_seconds() if self.policy.timeout else None
        attempt = 0
        while True:
            if self.breaker is not None:
                self.breaker.before()
            try:
                async with asyncio.timeout(timeout):
                    result = await fn()
            except Exception as exc:
                if timeout is not None and isinstance(exc, TimeoutError):
                    self._activated("timeout")
                failed = is_failure(exc)
                if self.breaker is not None:
                    self.breaker.record(not failed)
                if not failed or retry is None:
                    raise
                if 0 <= retry.max_retries <= attempt:
                    raise
                attempt += 1
                self._activated("retry")
                await self.sleep(backoff(retry, attempt))
                continue
            if self.breaker is not None:
                self.breaker.record(True)
            return result


def resilient(
    policy: Policy, target: str, on_activation: Activations | None = None
) -> Resilient | None:
    """The runner for ``policy``, or None when the policy is empty (call directly)."""
    return Resilient(policy, target, on_activation=on_activation) if policy else None


class _Behind:
    """A component whose listed async methods run under a policy; the rest passes through."""

    def __init__(
        self, wrapped: Any, runner: Resilient, is_failure: Callable[[BaseException], bool]
    ) -> None:
        self.wrapped = wrapped
        self._runner = runner
        self._is_failure = is_failure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _through_policy(name: str) -> Callable[..., Awaitable[Any]]:
    async def call(self: _Behind, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.wrapped, name)
        return await self._runner.call(lambda: method(*args, **kwargs), is_failure=self._is_failure)

    call.__name__ = name
    return call


def behind_policy(
    component: C,
    runner: Resilient,
    methods: tuple[str, ...],
    is_failure: Callable[[BaseException], bool] = _always,
) -> C:
    """``component`` with each of ``methods`` it has running under ``runner``. The wrapper
    defines exactly those methods, so feature checks (``isinstance`` against a runtime
    Protocol) see what the component itself offers."""
    calls = {name: _through_policy(name) for name in methods if hasattr(component, name)}
    cls = type(f"Resilient{type(component).__name__}", (_Behind,), calls)
    return cast(C, cls(component, runner, is_failure))
