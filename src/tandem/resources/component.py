"""``kind: Component`` — a configured instance of a building-block implementation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from ._parse import Node
from .common import (
    MetadataItem,
    in_scope,
    lookup,
    parse_metadata_items,
    parse_object_meta,
    parse_scopes,
)

# The first segment of a component type names its building block.
BLOCKS = (
    "bindings",
    "configuration",
    "conversation",
    "crypto",
    "lock",
    "middleware",
    "nameresolution",
    "pubsub",
    "secretstores",
    "state",
    "workflow",
)
_TYPE = re.compile(r"^[a-z][a-z0-9]*(\.[A-Za-z0-9][A-Za-z0-9_-]*)+$")
DEFAULT_INIT_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    type: str  # "<block>.<impl>", e.g. "state.redis", "middleware.http.oauth2"
    version: str = "v1"
    namespace: str | None = None
    init_timeout: timedelta = DEFAULT_INIT_TIMEOUT
    ignore_errors: bool = False
    metadata: tuple[MetadataItem, ...] = ()
    secret_store: str | None = None  # auth.secretStore, resolves secretKeyRef items
    scopes: tuple[str, ...] = ()
    source: str = field(default="", compare=False)  # file it was loaded from

    @property
    def block(self) -> str:
        return self.type.split(".", 1)[0]

    def meta(self, name: str, default: str | None = None) -> str | None:
        """A plain metadata value by case-insensitive name (secret refs are not values)."""
        item = lookup(self.metadata, name)
        if item is None or item.value is None:
            return default
        return item.value

    def plain_metadata(self) -> dict[str, str]:
        """Name → value of every item written inline; secretKeyRef items are left out."""
        return {item.name: item.value for item in self.metadata if item.value is not None}

    def secret_refs(self) -> tuple[MetadataItem, ...]:
        return tuple(item for item in self.metadata if item.secret_key_ref is not None)

    def is_scoped_for(self, app_id: str) -> bool:
        return in_scope(self.scopes, app_id)


def parse_component(doc: Node) -> Component:
    meta = parse_object_meta(doc)
    spec = doc.get("spec").require_present()
    type_node = spec.get("type")
    type_ = type_node.required_text()
    if not _TYPE.match(type_):
        raise type_node.error(
            f"type {type_!r} must look like <block>.<implementation>, e.g. state.redis"
        )
    block = type_.split(".", 1)[0]
    if block not in BLOCKS:
        raise type_node.error(f"unknown building block {block!r} (known: {', '.join(BLOCKS)})")
    version = spec.get("version").text().strip() or "v1"
    return Component(
        name=meta.name,
        namespace=meta.namespace,
        type=type_,
        version=version,
        init_timeout=spec.get("initTimeout").duration(DEFAULT_INIT_TIMEOUT),
        ignore_errors=spec.get("ignoreErrors").boolean(),
        metadata=parse_metadata_items(spec.get("metadata")),
        secret_store=doc.get("auth").get("secretStore").optional_text() or None,
        scopes=parse_scopes(doc),
        source=doc.file,
    )
