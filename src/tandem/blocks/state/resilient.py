"""A state store behind its Resiliency policy (``targets.components.<name>.outbound``).

The wrapper has exactly the call methods of the store it wraps, so the service's feature
checks (``isinstance(store, BulkWriter)``, ``Querier``) see the same store; every call goes
through :class:`tandem.blocks.resiliency.Resilient`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from tandem.blocks.resiliency import Resilient
from tandem.blocks.state.store import Feature, StateStore, StoreError

_CALLS = ("get", "bulk_get", "set", "delete", "transact", "bulk_write", "query")


def is_failure(exc: BaseException) -> bool:
    """ETag conflicts and bad requests are answers, not a store in trouble."""
    return not isinstance(exc, StoreError | ValueError)


class _Base:
    def __init__(self, store: StateStore, runner: Resilient) -> None:
        self.wrapped = store
        self._runner = runner

    @property
    def features(self) -> frozenset[Feature]:
        return self.wrapped.features

    async def close(self) -> None:
        await self.wrapped.close()


def _through_policy(name: str) -> Callable[..., Awaitable[Any]]:
    async def call(self: _Base, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self.wrapped, name)
        return await self._runner.call(lambda: method(*args, **kwargs), is_failure=is_failure)

    call.__name__ = name
    return call


def resilient_store(store: StateStore, runner: Resilient) -> StateStore:
    methods = {name: _through_policy(name) for name in _CALLS if hasattr(store, name)}
    cls = type(f"Resilient{type(store).__name__}", (_Base,), methods)
    return cast(StateStore, cls(store, runner))
