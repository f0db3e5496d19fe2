"""Which block gets which components, and which routes and RPCs each block adds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tandem.ext_proc.runtime import Runtime


def wire_blocks(runtime: Runtime) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    rpcs: dict[str, Callable[[Any], Awaitable[Any]]] = {}
    return rpcs
