"""``Configuration.spec.accessControl`` — which caller apps may invoke which operations."""

from __future__ import annotations

from dataclasses import dataclass

from ._parse import Node

ACTIONS = ("allow", "deny")


@dataclass(frozen=True, slots=True)
class OperationRule:
    name: str  # path pattern: `*` one segment, `**` any depth
    http_verbs: tuple[str, ...] = ("*",)
    action: str = "deny"  # required in YAML


@dataclass(frozen=True, slots=True)
class AppPolicy:
    app_id: str  # the caller
    default_action: str | None = None  # None: the global default applies
    trust_domain: str = "public"
    namespace: str = "default"
    operations: tuple[OperationRule, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessControl:
    default_action: str = "allow"
    trust_domain: str = "public"
    policies: tuple[AppPolicy, ...] = ()


def _operation(node: Node) -> OperationRule:
    verbs = tuple(verb.upper() for verb in node.get("httpVerb").text_list()) or ("*",)
    return OperationRule(
        name=node.get("name").required_text(),
        http_verbs=verbs,
        action=node.get("action").require_present().choice(ACTIONS, "deny"),
    )


def _policy(node: Node) -> AppPolicy:
    return AppPolicy(
        app_id=node.get("appId").required_text(),
        default_action=node.get("defaultAction").choice(ACTIONS, "") or None,
        # Dapr defaults each policy to "public", not to the global trust domain.
        trust_domain=node.get("trustDomain").text().strip() or "public",
        namespace=node.get("namespace").text().strip() or "default",
        operations=tuple(_operation(op) for op in node.get("operations").items()),
    )


def parse_access_control(node: Node) -> AccessControl | None:
    if not node.present:
        return None
    return AccessControl(
        default_action=node.get("defaultAction").choice(ACTIONS, "allow"),
        trust_domain=node.get("trustDomain").text().strip() or "public",
        policies=tuple(_policy(p) for p in node.get("policies").items()),
    )
