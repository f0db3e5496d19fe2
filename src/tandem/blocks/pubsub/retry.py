"""How often and how long to retry delivering a message to the app (pure).

With a Resiliency policy targeting the component's inbound side (``components.<name>.
inbound``, or the ``Default…Inbound…`` policies), that policy applies. Without one there
is no retry in the runtime, as in Dapr: a failed delivery goes to the dead-letter topic at
once, or back to the component, whose own redelivery tries it again later.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tandem.resources import Resiliency, StatusCodes
from tandem.resources.resiliency import component_policy


@dataclass(frozen=True, slots=True)
class RetryPlan:
    policy: str = "exponential"  # constant | exponential
    interval: float = 1.0  # constant: every wait; exponential: the first wait
    factor: float = 2.0
    max_interval: float = 60.0
    max_retries: int = 0  # -1: forever
    jitter: float = 0.0  # exponential: each wait × random(1 - jitter, 1 + jitter)
    http_status_codes: StatusCodes = StatusCodes()
    timeout: float | None = None  # per delivery attempt

    def allows(self, retries_done: int) -> bool:
        return self.max_retries < 0 or retries_done < self.max_retries

    def retries_status(self, http_status: int | None) -> bool:
        """With ``matching.httpStatusCodes`` set, only those statuses are retried."""
        if http_status is None or not self.http_status_codes:
            return True
        return http_status in self.http_status_codes

    def delay(self, retry: int, rnd: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry`` (1-based)."""
        if self.policy == "constant":
            return self.interval
        wait = self.interval * self.factor ** (retry - 1)
        if self.jitter:
            wait *= 1 - self.jitter + 2 * self.jitter * rnd()
        return min(wait, self.max_interval)


NO_RETRY = RetryPlan()  # Dapr's default for pub/sub deliveries: no retry in the runtime


def plan_for(component: str, resiliencies: Sequence[Resiliency]) -> RetryPlan:
    """The retry plan for deliveries from ``component`` to the app."""
    policy = component_policy(resiliencies, component, "inbound", "Pubsub")
    if policy.retry is None and policy.timeout is None:
        return NO_RETRY
    timeout = policy.timeout.total_seconds() if policy.timeout else None
    p = policy.retry
    if p is None:
        return RetryPlan(timeout=timeout)
    if p.policy == "constant":
        return RetryPlan(
            policy="constant",
            interval=p.duration.total_seconds(),
            max_retries=p.max_retries,
            http_status_codes=p.http_status_codes,
            timeout=timeout,
        )
    # Dapr's exponential back-off: from 500 ms, × 1.5 with ±50 % jitter, capped.
    return RetryPlan(
        policy="exponential",
        interval=0.5,
        factor=1.5,
        jitter=0.5,
        max_interval=p.max_interval.total_seconds(),
        max_retries=p.max_retries,
        http_status_codes=p.http_status_codes,
        timeout=timeout,
    )
