"""What an app subscribes to: declarative YAML and the app's ``GET /dapr/subscribe`` answer,
read into one model and merged (pure functions)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tandem.resources import BulkSubscribe, RoutingRule, Subscription

log = logging.getLogger(__name__)


class SubscriptionType(StrEnum):
    DECLARATIVE = "DECLARATIVE"
    PROGRAMMATIC = "PROGRAMMATIC"
    STREAMING = "STREAMING"


@dataclass(frozen=True, slots=True)
class TopicSubscription:
    pubsub_name: str
    topic: str
    # In order; a rule with an empty match is the catch-all (default route).
    rules: tuple[RoutingRule, ...]
    type: SubscriptionType
    dead_letter_topic: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    bulk: BulkSubscribe = BulkSubscribe()
    name: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.pubsub_name, self.topic


def from_declarative(sub: Subscription) -> TopicSubscription:
    return TopicSubscription(
        pubsub_name=sub.pubsub_name,
        topic=sub.topic,
        rules=sub.rules,
        type=SubscriptionType.DECLARATIVE,
        dead_letter_topic=sub.dead_letter_topic,
        metadata=dict(sub.metadata),
        bulk=sub.bulk_subscribe,
        name=sub.name,
    )


class InvalidSubscription(ValueError):
    pass


def _text(item: Mapping[str, object], *names: str) -> str:
    for name in names:
        value = item.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _rules(item: Mapping[str, object]) -> tuple[RoutingRule, ...]:
    rules: list[RoutingRule] = []
    routes = item.get("routes")
    if isinstance(routes, Mapping):
        for rule in routes.get("rules") or ():
            if not isinstance(rule, Mapping):
                raise InvalidSubscription("routes.rules entries must be objects")
            path = _text(rule, "path")
            if not path:
                raise InvalidSubscription("every routing rule needs a path")
            rules.append(RoutingRule(match=_text(rule, "match"), path=path))
        default = _text(routes, "default")
        if default:
            rules.append(RoutingRule(match="", path=default))
    elif routes is not None:
        raise InvalidSubscription("routes must be an object with rules and default")
    route = _text(item, "route")
    if route and not any(not r.match for r in rules):
        rules.append(RoutingRule(match="", path=route))
    if not rules:
        raise InvalidSubscription("needs a route, routes.default or routing rules")
    return tuple(rules)


def _bulk(value: object) -> BulkSubscribe:
    if not isinstance(value, Mapping):
        return BulkSubscribe()
    count, wait = value.get("maxMessagesCount"), value.get("maxAwaitDurationMs")
    return BulkSubscribe(
        enabled=value.get("enabled") is True,
        max_messages_count=count if isinstance(count, int) else None,
        max_await_duration_ms=wait if isinstance(wait, int) else None,
    )


def parse_programmatic(payload: object) -> tuple[list[TopicSubscription], list[str]]:
    """The app's ``/dapr/subscribe`` JSON (v1 ``route`` or v2 ``routes``) → subscriptions,
    plus a problem line for each entry skipped."""
    if payload is None:
        return [], []
    if not isinstance(payload, list):
        return [], ["/dapr/subscribe must answer a JSON array"]
    subs: list[TopicSubscription] = []
    problems: list[str] = []
    for i, item in enumerate(payload):
        if not isinstance(item, Mapping):
            problems.append(f"entry {i}: not an object")
            continue
        pubsub, topic = _text(item, "pubsubname", "pubsubName"), _text(item, "topic")
        if not pubsub or not topic:
            problems.append(f"entry {i}: pubsubname and topic are required")
            continue
        try:
            rules = _rules(item)
        except InvalidSubscription as exc:
            problems.append(f"entry {i} ({pubsub}/{topic}): {exc}")
            continue
        md = item.get("metadata")
        subs.append(
            TopicSubscription(
                pubsub_name=pubsub,
                topic=topic,
                rules=rules,
                type=SubscriptionType.PROGRAMMATIC,
                dead_letter_topic=_text(item, "deadLetterTopic") or None,
                metadata={str(k): str(v) for k, v in md.items()} if isinstance(md, Mapping) else {},
                bulk=_bulk(item.get("bulkSubscribe")),
            )
        )
    return subs, problems


def merge(*groups: Iterable[TopicSubscription]) -> tuple[list[TopicSubscription], list[str]]:
    """One subscription per (pubsub, topic): the first wins (declarative before programmatic)."""
    out: dict[tuple[str, str], TopicSubscription] = {}
    problems: list[str] = []
    for group in groups:
        for sub in group:
            if sub.key in out:
                problems.append(
                    f"{sub.type.value.lower()} subscription to {sub.pubsub_name}/{sub.topic} "
                    f"ignored: a {out[sub.key].type.value.lower()} one exists"
                )
                continue
            out[sub.key] = sub
    return list(out.values()), problems


def rules_json(rules: Sequence[RoutingRule]) -> list[dict[str, str]]:
    return [{"match": r.match, "path": r.path} for r in rules]
