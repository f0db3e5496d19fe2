"""Which block gets which components, and which HTTP routes and gRPC RPCs each block adds."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tandem.blocks.metadata import ComponentInfo
from tandem.blocks.registry import ComponentContext, ComponentSpec, known_types
from tandem.blocks.state.service import StateService
from tandem.ext_proc import state_grpc, state_http
from tandem.ext_proc.router import Router

log = logging.getLogger("tandem.runtime")

Rpc = Callable[[Any], Awaitable[Any]]

# Building blocks this runtime serves; components of other blocks are skipped with a warning
# so an existing Dapr resources folder (which usually also holds pubsub.yaml) still starts.
SERVED_BLOCKS = frozenset({"state"})


@dataclass(slots=True)
class Wiring:
    rpcs: dict[str, Rpc] = field(default_factory=dict)
    components: list[ComponentInfo] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def wire_blocks(router: Router, specs: Sequence[ComponentSpec], ctx: ComponentContext) -> Wiring:
    wiring = Wiring()
    served = []
    for spec in specs:
        block = spec.type.split(".", 1)[0]
        if block in SERVED_BLOCKS:
            served.append(spec)
        else:
            log.warning(
                "component skipped: its building block is not served by this runtime yet",
                extra={"component": spec.name, "type": spec.type},
            )
    unknown = [s for s in served if s.type not in known_types()]
    if unknown:
        s = unknown[0]
        known = ", ".join(
            sorted(t for t in known_types() if t.startswith(s.type.split(".")[0] + "."))
        )
        raise ValueError(f"component {s.name}: unknown type {s.type!r} (known: {known})")

    state = StateService.from_specs(served, ctx)
    state_http.register(router, state)
    wiring.rpcs.update(state_grpc.rpcs(state))
    for name, comp in state.components.items():
        caps = tuple(sorted(f.value for f in state.features(name)))
        wiring.components.append(ComponentInfo(name, comp.type, _version(served, name), caps))
    wiring.closers.append(state.close)
    return wiring


def _version(specs: Sequence[ComponentSpec], name: str) -> str:
    return next((s.version for s in specs if s.name == name), "v1")
