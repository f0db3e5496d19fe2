"""Pieces every Dapr resource kind shares: object metadata, scopes, name/value items."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ._parse import Node, scalar_to_text

# Kubernetes-style names are the portable subset; self-hosted Dapr is laxer, so only
# reject what would break a URL path segment or a log line.
_BAD_NAME = re.compile(r"[\s/]")


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """A value to fetch from the resource's secret store (``auth.secretStore``)."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class MetadataItem:
    """One ``{name, value}`` or ``{name, secretKeyRef}`` entry.

    Exactly one of ``value`` and ``secret_key_ref`` is set; an item with neither has the
    empty string as its value, which is what Dapr passes to the component.
    """

    name: str
    value: str | None = None
    secret_key_ref: SecretKeyRef | None = None


def parse_object_meta(doc: Node) -> ObjectMeta:
    meta = doc.get("metadata")
    name_node = meta.get("name")
    name = name_node.required_text()
    if _BAD_NAME.search(name):
        raise name_node.error(f"name {name!r} must not contain whitespace or '/'")
    namespace = meta.get("namespace").optional_text() or None
    return ObjectMeta(name=name, namespace=namespace)


def parse_scopes(doc: Node) -> tuple[str, ...]:
    scopes = doc.get("scopes")
    result = []
    for item in scopes.items():
        app_id = item.required_text()
        result.append(app_id.strip())
    return tuple(result)


def in_scope(scopes: tuple[str, ...], app_id: str) -> bool:
    """No scopes means every app; otherwise only the listed app ids."""
    return not scopes or app_id in scopes


def parse_secret_key_ref(node: Node) -> SecretKeyRef:
    name = node.get("name").required_text()
    # Dapr reads the secret's own name as the key when `key` is omitted, which is what
    # single-value stores (env, local file) expect.
    key = node.get("key").text() or name
    return SecretKeyRef(name=name, key=key)


def parse_value_or_secret(node: Node) -> tuple[str | None, SecretKeyRef | None]:
    """The ``value`` / ``secretKeyRef`` pair of a name/value item or a TLS document."""
    value_node = node.get("value")
    ref_node = node.get("secretKeyRef")
    if ref_node.present:
        if value_node.present:
            raise node.error("set either value or secretKeyRef, not both")
        return None, parse_secret_key_ref(ref_node)
    return scalar_to_text(value_node.value), None


def parse_metadata_items(node: Node, *, what: str = "metadata item") -> tuple[MetadataItem, ...]:
    items: list[MetadataItem] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(node.items()):
        name = item.get("name").required_text()
        # Components look names up case-insensitively, so "Host" and "host" collide.
        folded = name.lower()
        if folded in seen:
            raise item.get("name").error(
                f"duplicate {what} {name!r} (first defined at {node.path}[{seen[folded]}])"
            )
        seen[folded] = index
        value, ref = parse_value_or_secret(item)
        items.append(MetadataItem(name=name, value=value, secret_key_ref=ref))
    return tuple(items)


def lookup(items: Iterable[MetadataItem], name: str) -> MetadataItem | None:
    folded = name.lower()
    for item in items:
        if item.name.lower() == folded:
            return item
    return None
