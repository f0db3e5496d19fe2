"""Resiliency ``targets.actors``: the caller's policies around each actor call, with the
circuit breaker kept per actor id, per actor type or both (``circuitBreakerScope``; Dapr's
default is ``id``). Built on the runtime's one policy runner (``tandem.blocks.resiliency``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from tandem.blocks.resiliency import Resilient
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.resources import Resiliency
from tandem.resources.resiliency import Policy, actor_policy

T = TypeVar("T")

DEFAULT_CACHE_SIZE = 5000  # Dapr's circuitBreakerCacheSize default


class ActorPolicies:
    def __init__(
        self, resiliencies: Sequence[Resiliency], metrics: RuntimeMetrics = NO_METRICS
    ) -> None:
        self._resiliencies = tuple(resiliencies)
        self._metrics = metrics
        self._policies: dict[str, Policy] = {}
        self._runners: OrderedDict[tuple[str, str], Resilient] = OrderedDict()

    def _policy(self, actor_type: str) -> Policy:
        if actor_type not in self._policies:
            self._policies[actor_type] = actor_policy(self._resiliencies, actor_type)
        return self._policies[actor_type]

    def _target(self, actor_type: str) -> tuple[str, int]:
        for res in self._resiliencies:
            target = res.actors.get(actor_type)
            if target is not None:
                return (
                    target.circuit_breaker_scope or "id",
                    target.circuit_breaker_cache_size or DEFAULT_CACHE_SIZE,
                )
        return "id", DEFAULT_CACHE_SIZE

    def _runner(self, key: tuple[str, str], policy: Policy, cache_size: int) -> Resilient:
        runner = self._runners.get(key)
        if runner is None:
            runner = self._runners[key] = Resilient(
                policy,
                f"actor {key[0]}/{key[1] or '*'}",
                on_activation=self._metrics.activations_for("outbound", f"actor_{key[0]}"),
            )
            while len(self._runners) > cache_size:
                self._runners.popitem(last=False)  # the least recently used breaker goes
        else:
            self._runners.move_to_end(key)
        return runner

    async def call(
        self,
        actor_type: str,
        actor_id: str,
        fn: Callable[[], Awaitable[T]],
        is_failure: Callable[[BaseException], bool],
    ) -> T:
        policy = self._policy(actor_type)
        if not policy:
            return await fn()
        scope, cache_size = self._target(actor_type)
        if scope == "type":
            return await self._runner((actor_type, ""), policy, cache_size).call(
                fn, is_failure=is_failure
            )
        runner = self._runner((actor_type, actor_id), policy, cache_size)
        if scope != "both" or policy.circuit_breaker is None:
            return await runner.call(fn, is_failure=is_failure)
        # both: the id's policy, inside the type's breaker (which alone retries nothing).
        type_breaker = self._runner(
            (actor_type, ""), replace(policy, timeout=None, retry=None), cache_size
        )
        return await type_breaker.call(
            lambda: runner.call(fn, is_failure=is_failure), is_failure=is_failure
        )
