"""Components are registered by their Dapr type name (``state.redis``, ``pubsub.kafka``).

The registry names a factory by import path, so a component's client library is imported
only when a component of that type is configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ComponentContext:
    """What a component may know about the sidecar that loads it."""

    app_id: str
    namespace: str = "default"
    home: Path = field(default_factory=lambda: Path.home() / ".tandem")


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """A configured component, independent of the YAML it came from."""

    name: str
    type: str  # e.g. "state.redis"
    version: str = "v1"
    # Resolved secretKeyRef values live here too: kept out of repr (and so of logs).
    metadata: Mapping[str, str] = field(default_factory=dict, repr=False)


Factory = Callable[[ComponentSpec, ComponentContext], Any]

# Dapr type name -> (allowed versions, "module:attribute" of the factory).
_FACTORIES: dict[str, tuple[tuple[str, ...], str]] = {
    "state.sqlite": (("v1",), "tandem.blocks.state.sqlite:create"),
    "state.redis": (("v1",), "tandem.blocks.state.redis:create"),
    "state.postgresql": (("v1", "v2"), "tandem.blocks.state.postgresql:create"),
    "state.in-memory": (("v1",), "tandem.blocks.state.memory:create"),
    "pubsub.redis": (("v1",), "tandem.blocks.pubsub.redis:create"),
    "pubsub.kafka": (("v1",), "tandem.blocks.pubsub.kafka:create"),
    "pubsub.in-memory": (("v1",), "tandem.blocks.pubsub.memory:create"),
    # The embedded, durable default that delivers across the sidecars of one machine.
    "pubsub.sqlite": (("v1",), "tandem.blocks.pubsub.sqlite:create"),
    "secretstores.local.file": (("v1",), "tandem.blocks.secrets.local_file:create"),
    "secretstores.local.env": (("v1",), "tandem.blocks.secrets.local_env:create"),
    "secretstores.kubernetes": (("v1",), "tandem.blocks.secrets.kubernetes:create"),
    "lock.redis": (("v1",), "tandem.blocks.lock.redis:create"),
    # The embedded default: one file shared by the sidecars of one machine.
    "lock.sqlite": (("v1",), "tandem.blocks.lock.sqlite:create"),
    "configuration.redis": (("v1",), "tandem.blocks.configuration.redis:create"),
    "configuration.postgresql": (("v1",), "tandem.blocks.configuration.postgresql:create"),
    # The embedded default, edited with any SQLite client.
    "configuration.sqlite": (("v1",), "tandem.blocks.configuration.sqlite:create"),
    "conversation.echo": (("v1",), "tandem.blocks.conversation.echo:create"),
    "conversation.openai": (("v1",), "tandem.blocks.conversation.openai_chat:create"),
    "crypto.dapr.localstorage": (("v1",), "tandem.blocks.crypto.localstorage:create"),
    "bindings.localstorage": (("v1",), "tandem.blocks.bindings.localstorage:create"),
    "bindings.http": (("v1",), "tandem.blocks.bindings.http:create"),
    "bindings.cron": (("v1",), "tandem.blocks.bindings.cron:create"),
    "bindings.redis": (("v1",), "tandem.blocks.bindings.redis:create"),
    "bindings.postgresql": (("v1",), "tandem.blocks.bindings.postgresql:create"),
    "bindings.postgres": (("v1",), "tandem.blocks.bindings.postgresql:create"),
    "bindings.kafka": (("v1",), "tandem.blocks.bindings.kafka:create"),
    # Tandem's own embedded pair (a queue and SQL on one file), for zero-infra setups.
    "bindings.sqlite": (("v1",), "tandem.blocks.bindings.sqlite:create"),
}


class UnknownComponentError(ValueError):
    pass


def known_types() -> Mapping[str, tuple[str, ...]]:
    return {name: versions for name, (versions, _) in _FACTORIES.items()}


def create_component(spec: ComponentSpec, ctx: ComponentContext) -> Any:
    """Build the component for ``spec``; raises UnknownComponentError for unknown type/version."""
    entry = _FACTORIES.get(spec.type)
    if entry is None:
        raise UnknownComponentError(f"unknown component type {spec.type!r}")
    versions, target = entry
    if spec.version not in versions:
        raise UnknownComponentError(
            f"component type {spec.type!r} has no version {spec.version!r} (known: {', '.join(versions)})"
        )
    module_name, attr = target.split(":")
    factory: Factory = getattr(importlib.import_module(module_name), attr)
    return factory(spec, ctx)
