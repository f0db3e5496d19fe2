from collections.abc import Callable

import pytest

from tandem.resources import BulkSubscribe, ResourceError, ResourceSet, RoutingRule, Subscription

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]

V2_WITH_RULES = """
    apiVersion: dapr.io/v2alpha1
    kind: Subscription
    metadata:
      name: order-pub-sub
    spec:
      topic: orders
      routes:
        rules:
          - match: event.type == "widget"
            path: /widgets
          - match: event.type == "gadget"
            path: /gadgets
        default: /products
      pubsubname: pubsub
      deadLetterTopic: poisonMessages
      metadata:
        rawPayload: "true"
      bulkSubscribe:
        enabled: true
        maxMessagesCount: 100
        maxAwaitDurationMs: 40
    scopes:
    - orderprocessing
    - checkout
"""

V1_SINGLE_ROUTE = """
    apiVersion: dapr.io/v1alpha1
    kind: Subscription
    metadata:
      name: order-pub-sub
    spec:
      topic: orders
      route: /checkout
      pubsubname: pubsub
    scopes:
    - orderprocessing
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            V2_WITH_RULES,
            Subscription(
                name="order-pub-sub",
                pubsub_name="pubsub",
                topic="orders",
                rules=(
                    RoutingRule('event.type == "widget"', "/widgets"),
                    RoutingRule('event.type == "gadget"', "/gadgets"),
                    RoutingRule("", "/products"),
                ),
                dead_letter_topic="poisonMessages",
                metadata={"rawPayload": "true"},
                bulk_subscribe=BulkSubscribe(True, 100, 40),
                scopes=("orderprocessing", "checkout"),
                api_version="v2alpha1",
            ),
            id="v2alpha1-rules-default-bulk",
        ),
        pytest.param(
            V1_SINGLE_ROUTE,
            Subscription(
                name="order-pub-sub",
                pubsub_name="pubsub",
                topic="orders",
                rules=(RoutingRule("", "/checkout"),),
                scopes=("orderprocessing",),
                api_version="v1alpha1",
            ),
            id="v1alpha1-route-becomes-catch-all-rule",
        ),
    ],
)
def test_valid_subscription_loads_as_model(load: Load, text: str, expected: Subscription) -> None:
    (sub,) = load(text, app_id="orderprocessing").subscriptions
    assert sub == expected


def test_default_route_is_the_trailing_catch_all(load: Load) -> None:
    (v2,) = load(V2_WITH_RULES, app_id="checkout").subscriptions
    (v1,) = load(V1_SINGLE_ROUTE, app_id="orderprocessing").subscriptions
    assert v2.default_route == "/products"
    assert v1.default_route == "/checkout"


def test_v2_subscription_with_rules_only_has_no_default_route(load: Load) -> None:
    (sub,) = load(
        """
        apiVersion: dapr.io/v2alpha1
        kind: Subscription
        metadata: {name: s}
        spec:
          pubsubname: pubsub
          topic: orders
          routes:
            rules: [{match: 'event.data.total > 100', path: /big}]
        """
    ).subscriptions
    assert sub.default_route is None
    assert sub.bulk_subscribe == BulkSubscribe()


def test_subscription_scoped_to_other_apps_is_dropped(load: Load) -> None:
    assert load(V2_WITH_RULES, app_id="shipping").subscriptions == ()


def _sub(spec: str, version: str = "v2alpha1") -> str:
    return (
        f"apiVersion: dapr.io/{version}\nkind: Subscription\nmetadata: {{name: s}}\nspec:\n"
        + spec
        + "\n"
    )


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        pytest.param(
            _sub("  topic: orders\n  routes: {default: /o}"),
            "spec.pubsubname",
            "is required",
            id="missing-pubsubname",
        ),
        pytest.param(
            _sub("  pubsubname: pubsub\n  routes: {default: /o}"),
            "spec.topic",
            "is required",
            id="missing-topic",
        ),
        pytest.param(
            _sub("  pubsubname: pubsub\n  topic: orders"),
            "spec.routes",
            "needs a default route or at least one rule",
            id="v2-without-routes",
        ),
        pytest.param(
            _sub("  pubsubname: pubsub\n  topic: orders\n  route: /o"),
            "spec.routes",
            "needs a default route",
            id="v2-with-only-v1-route",
        ),
        pytest.param(
            _sub("  pubsubname: pubsub\n  topic: orders", version="v1alpha1"),
            "spec.route",
            "is required",
            id="v1-without-route",
        ),
        pytest.param(
            _sub("  pubsubname: pubsub\n  topic: orders\n  routes: {rules: [{match: 'true'}]}"),
            "spec.routes.rules[0].path",
            "is required",
            id="rule-without-path",
        ),
        pytest.param(
            _sub("  pubsubname: pubsub\n  topic: orders\n  routes: {rules: {match: x}}"),
            "spec.routes.rules",
            "expected a list",
            id="rules-not-list",
        ),
        pytest.param(
            _sub(
                "  pubsubname: pubsub\n  topic: orders\n  routes: {default: /o}\n"
                "  metadata: {rawPayload: true}"
            ),
            "spec.metadata.rawPayload",
            "expected a string, got boolean true (quote it)",
            id="metadata-unquoted-bool",
        ),
        pytest.param(
            _sub(
                "  pubsubname: pubsub\n  topic: orders\n  routes: {default: /o}\n"
                "  bulkSubscribe: {enabled: true, maxMessagesCount: many}"
            ),
            "spec.bulkSubscribe.maxMessagesCount",
            "expected an integer",
            id="bulk-count-not-int",
        ),
        pytest.param(
            _sub("  pubsubname: pubsub\n  topic: orders\n  routes: {default: /o}", "v3"),
            "apiVersion",
            "Subscription does not support 'dapr.io/v3' (use dapr.io/v1alpha1, dapr.io/v2alpha1)",
            id="unsupported-version",
        ),
    ],
)
def test_invalid_subscription_error_names_file_field_and_reason(
    expect_error: ExpectError, text: str, field: str, reason: str
) -> None:
    expect_error(text, field, reason)
