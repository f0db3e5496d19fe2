"""The one protocol every binding component implements (output, input, or both).

An output binding answers :meth:`OutputBinding.invoke` for the operations it lists; an
input binding runs :meth:`InputBinding.read` until cancelled, handing each event to the
runtime and learning whether the app took it (a component that can redeliver does so on
``False``; one that cannot, such as cron, moves on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    operation: str
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvokeResponse:
    """``data`` None: the binding answered nothing (the API answers 204)."""

    data: bytes | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None


class BindingError(Exception):
    """A component's failure; ``metadata`` still reaches the caller (as Dapr sends it)."""

    def __init__(self, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.metadata: Mapping[str, str] = metadata or {}


@dataclass(frozen=True, slots=True)
class InputEvent:
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


# Delivers one event to the app; True when the app acknowledged it.
EventHandler = Callable[[InputEvent], Awaitable[bool]]


@runtime_checkable
class OutputBinding(Protocol):
    operations: frozenset[str]

    async def invoke(self, request: InvokeRequest) -> InvokeResponse: ...

    async def close(self) -> None: ...


@runtime_checkable
class InputBinding(Protocol):
    async def read(self, handler: EventHandler) -> None: ...

    async def close(self) -> None: ...
