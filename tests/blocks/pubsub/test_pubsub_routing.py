"""Subscriptions and routing: /dapr/subscribe shapes, merging, CEL rules, retry plans,
topic scopes, and how the app's HTTP answer is read — pure functions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tandem.blocks.pubsub.delivery import DeliveryStatus
from tandem.blocks.pubsub.http_delivery import classify
from tandem.blocks.pubsub.retry import NO_RETRY, RetryPlan, plan_for
from tandem.blocks.pubsub.routing import RouteError, Routes
from tandem.blocks.pubsub.scopes import TopicScopes
from tandem.blocks.pubsub.subscriptions import (
    SubscriptionType,
    TopicSubscription,
    merge,
    parse_programmatic,
)
from tandem.resources import ComponentTarget, PolicyNames, Resiliency, RetryPolicy, RoutingRule


def test_v1_route_and_v2_routes_shapes_are_both_read():
    subs, problems = parse_programmatic(
        [
            {"pubsubname": "p", "topic": "a", "route": "/a", "deadLetterTopic": "dl"},
            {
                "pubsubname": "p",
                "topic": "b",
                "routes": {
                    "rules": [{"match": "event.type == 'x'", "path": "/x"}],
                    "default": "/b",
                },
                "metadata": {"rawPayload": "true"},
                "bulkSubscribe": {"enabled": True, "maxMessagesCount": 10},
            },
        ]
    )
    assert problems == []
    a, b = subs
    assert a.rules == (RoutingRule("", "/a"),) and a.dead_letter_topic == "dl"
    assert b.rules == (RoutingRule("event.type == 'x'", "/x"), RoutingRule("", "/b"))
    assert b.metadata == {"rawPayload": "true"}
    assert b.bulk.enabled and b.bulk.max_messages_count == 10
    assert {s.type for s in subs} == {SubscriptionType.PROGRAMMATIC}


@pytest.mark.parametrize(
    "entry",
    [
        {"topic": "a", "route": "/a"},
        {"pubsubname": "p", "topic": "a"},
        {"pubsubname": "p", "topic": "a", "routes": {"rules": [{"match": "true"}]}},
        "not an object",
    ],
)
def test_invalid_programmatic_entries_are_skipped_with_a_reason(entry):
    subs, problems = parse_programmatic([entry, {"pubsubname": "p", "topic": "ok", "route": "/ok"}])
    assert [s.topic for s in subs] == ["ok"]
    assert len(problems) == 1


def test_declarative_subscription_wins_over_a_programmatic_one_for_the_same_topic():
    decl = TopicSubscription("p", "t", (RoutingRule("", "/d"),), SubscriptionType.DECLARATIVE)
    prog = TopicSubscription("p", "t", (RoutingRule("", "/p"),), SubscriptionType.PROGRAMMATIC)
    other = TopicSubscription("p", "u", (RoutingRule("", "/u"),), SubscriptionType.PROGRAMMATIC)
    merged, problems = merge([decl], [prog, other])
    assert merged == [decl, other]
    assert len(problems) == 1


ROUTES = Routes.compile(
    [
        RoutingRule('event.type == "widget"', "/widgets"),
        RoutingRule("event.data.size > 10", "/big"),
        RoutingRule("", "/default"),
    ]
)


@pytest.mark.parametrize(
    ("event", "path"),
    [
        ({"type": "widget", "data": {"size": 99}}, "/widgets"),
        ({"type": "gadget", "data": {"size": 11}}, "/big"),
        ({"type": "gadget", "data": {"size": 1}}, "/default"),
        ({"type": "gadget", "data": "not an object"}, "/default"),  # a rule that errors: no match
    ],
)
def test_first_matching_cel_rule_gives_the_route(event, path):
    assert ROUTES.path_for(event) == path


def test_no_matching_rule_and_no_default_gives_no_route():
    routes = Routes.compile([RoutingRule('event.type == "x"', "/x")])
    assert routes.path_for({"type": "y"}) is None


def test_malformed_cel_is_refused_when_compiled():
    with pytest.raises(RouteError):
        Routes.compile([RoutingRule("event.type ==", "/x")])


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"", DeliveryStatus.SUCCESS),
        (204, b"", DeliveryStatus.SUCCESS),
        (200, b"not json", DeliveryStatus.SUCCESS),
        (200, b'{"other": 1}', DeliveryStatus.SUCCESS),
        (200, b'{"status": "SUCCESS"}', DeliveryStatus.SUCCESS),
        (200, b'{"status": "success"}', DeliveryStatus.SUCCESS),
        (200, b'{"status": "RETRY"}', DeliveryStatus.RETRY),
        (200, b'{"status": "DROP"}', DeliveryStatus.DROP),
        (200, b'{"status": "WHATEVER"}', DeliveryStatus.RETRY),
        (404, b"", DeliveryStatus.NOT_FOUND),
        (400, b"", DeliveryStatus.RETRY),
        (500, b'{"status": "SUCCESS"}', DeliveryStatus.RETRY),
    ],
)
def test_the_apps_answer_is_read_as_dapr_reads_it(status, body, expected):
    assert classify(status, body).status is expected


def test_without_a_resiliency_policy_deliveries_are_not_retried():
    assert plan_for("pubsub", []) == NO_RETRY
    assert not NO_RETRY.allows(0)


def _resiliency(retry: RetryPolicy, target: str = "pubsub") -> Resiliency:
    return Resiliency(
        name="r",
        retries={"mine": retry},
        timeouts={"quick": timedelta(seconds=2)},
        components={target: ComponentTarget(inbound=PolicyNames(retry="mine", timeout="quick"))},
    )


def test_resiliency_inbound_policy_replaces_the_default():
    res = _resiliency(
        RetryPolicy(policy="constant", duration=timedelta(milliseconds=10), max_retries=2)
    )
    plan = plan_for("pubsub", [res])
    assert (plan.policy, plan.interval, plan.max_retries, plan.timeout) == (
        "constant",
        0.01,
        2,
        2.0,
    )
    assert plan_for("other", [res]) == NO_RETRY


def test_resiliency_exponential_policy_is_capped_at_max_interval():
    res = _resiliency(
        RetryPolicy(policy="exponential", max_interval=timedelta(seconds=3), max_retries=-1)
    )
    plan = plan_for("pubsub", [res])
    assert plan.allows(10_000)
    assert all(plan.delay(i, rnd=lambda: 1.0) <= 3.0 for i in range(1, 30))


def test_retry_plan_with_status_matching_retries_only_those_statuses():
    from tandem.resources.resiliency import StatusCodes

    plan = RetryPlan(http_status_codes=StatusCodes((range(500, 600),)))
    assert plan.retries_status(503) and not plan.retries_status(400)
    assert plan.retries_status(None)  # transport errors always retry


@pytest.mark.parametrize(
    ("metadata", "app", "topic", "publish", "subscribe"),
    [
        ({}, "a", "t", True, True),
        ({"publishingScopes": "a=t1,t2;b="}, "a", "t1", True, True),
        ({"publishingScopes": "a=t1,t2;b="}, "a", "t3", False, True),
        ({"publishingScopes": "a=t1,t2;b="}, "b", "t1", False, True),
        ({"publishingScopes": "a=t1,t2;b="}, "c", "t9", True, True),
        ({"subscriptionScopes": "a=t1"}, "a", "t2", True, False),
        ({"allowedTopics": "t1,t2"}, "a", "t3", False, False),
        ({"protectedTopics": "secret"}, "a", "secret", False, False),
        ({"protectedTopics": "secret", "publishingScopes": "a=secret"}, "a", "secret", True, False),
    ],
)
def test_topic_scopes_from_component_metadata(metadata, app, topic, publish, subscribe):
    scopes = TopicScopes.from_metadata(metadata)
    assert scopes.may_publish(app, topic) is publish
    assert scopes.may_subscribe(app, topic) is subscribe
