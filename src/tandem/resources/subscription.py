"""``kind: Subscription`` — declarative pub/sub subscriptions, v1alpha1 and v2alpha1.

Both versions become one model: an ordered list of routing rules where the last rule
may be a catch-all (empty ``match``) holding the default route (v2alpha1
``routes.default``) or the single route (v1alpha1 ``route``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._parse import Node
from .common import in_scope, parse_object_meta, parse_scopes

VERSIONS = ("v1alpha1", "v2alpha1")


@dataclass(frozen=True, slots=True)
class RoutingRule:
    match: str  # CEL over `event`; "" matches every event
    path: str


@dataclass(frozen=True, slots=True)
class BulkSubscribe:
    enabled: bool = False
    max_messages_count: int | None = None
    max_await_duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    pubsub_name: str
    topic: str
    rules: tuple[RoutingRule, ...]
    namespace: str | None = None
    dead_letter_topic: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    bulk_subscribe: BulkSubscribe = BulkSubscribe()
    scopes: tuple[str, ...] = ()
    api_version: str = "v2alpha1"
    source: str = field(default="", compare=False)

    @property
    def default_route(self) -> str | None:
        if self.rules and not self.rules[-1].match:
            return self.rules[-1].path
        return None

    def is_scoped_for(self, app_id: str) -> bool:
        return in_scope(self.scopes, app_id)


def _parse_rules(spec: Node) -> tuple[RoutingRule, ...]:
    routes = spec.get("routes")
    rules = []
    for item in routes.get("rules").items():
        match = item.get("match").text().strip()
        path = item.get("path").required_text()
        # An empty match is a catch-all, as in Dapr: rules after it are kept but never win.
        rules.append(RoutingRule(match=match, path=path))
    default = routes.get("default").text().strip()
    if default:
        rules.append(RoutingRule(match="", path=default))
    if not rules:
        raise routes.error("needs a default route or at least one rule")
    return tuple(rules)


def _parse_bulk(node: Node) -> BulkSubscribe:
    return BulkSubscribe(
        enabled=node.get("enabled").boolean(),
        max_messages_count=node.get("maxMessagesCount").optional_integer(),
        max_await_duration_ms=node.get("maxAwaitDurationMs").optional_integer(),
    )


def parse_subscription(doc: Node, version: str) -> Subscription:
    meta = parse_object_meta(doc)
    spec = doc.get("spec").require_present()
    if version == "v1alpha1":
        route = spec.get("route").required_text()
        rules: tuple[RoutingRule, ...] = (RoutingRule(match="", path=route),)
    else:
        rules = _parse_rules(spec)
    return Subscription(
        name=meta.name,
        namespace=meta.namespace,
        pubsub_name=spec.get("pubsubname").required_text(),
        topic=spec.get("topic").required_text(),
        rules=rules,
        dead_letter_topic=spec.get("deadLetterTopic").text().strip() or None,
        metadata=spec.get("metadata").text_map(),
        bulk_subscribe=_parse_bulk(spec.get("bulkSubscribe")),
        scopes=parse_scopes(doc),
        api_version=version,
        source=doc.file,
    )
