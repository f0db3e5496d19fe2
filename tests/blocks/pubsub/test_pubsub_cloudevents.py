"""The CloudEvents envelope, as table tests over pure functions."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from tandem.blocks.pubsub import cloudevents as ce

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def build(data: bytes, content_type: str = "", **kw):
    args = dict(
        content_type=content_type,
        topic="orders",
        pubsub_name="pubsub",
        source="app-a",
        now=NOW,
        new_id="id-1",
    )
    args.update(kw)
    return ce.envelope(data, **args)


def test_envelope_has_every_dapr_field():
    event = build(b'{"a": 1}', "application/json", traceparent=TRACE, tracestate="k=v")
    assert event == {
        "specversion": "1.0",
        "id": "id-1",
        "source": "app-a",
        "type": "com.dapr.event.sent",
        "datacontenttype": "application/json",
        "data": {"a": 1},
        "time": "2024-01-02T03:04:05Z",
        "topic": "orders",
        "pubsubname": "pubsub",
        "traceid": TRACE,
        "traceparent": TRACE,
        "tracestate": "k=v",
    }


@pytest.mark.parametrize(
    ("content_type", "data", "fields"),
    [
        ("application/json", b'{"x": [1, 2]}', {"data": {"x": [1, 2]}}),
        ("application/json; charset=utf-8", b"7", {"data": 7}),
        ("application/json", b"not json", {"data": "not json"}),
        (
            "application/json",
            b"123456789012345678901234567890",
            {"data": 123456789012345678901234567890},
        ),
        (
            "application/octet-stream",
            b"\x00\xff",
            {"data_base64": base64.b64encode(b"\x00\xff").decode()},
        ),
        ("text/plain", b"hello", {"data": "hello"}),
        ("", b"hello", {"data": "hello"}),
        ("application/problem+json", b'{"a": 1}', {"data": '{"a": 1}'}),  # only exact JSON
    ],
)
def test_data_follows_the_content_type(content_type, data, fields):
    event = build(data, content_type)
    assert {k: event[k] for k in fields} == fields
    assert event["datacontenttype"] == (content_type or "text/plain")
    if "data_base64" in fields:
        assert "data" not in event


def test_user_cloudevent_is_completed_and_its_routing_fields_overwritten():
    body = orjson.dumps(
        {"id": "mine", "type": "widget", "source": "me", "data": {"w": 1}, "topic": "x", "extra": 5}
    )
    event = build(body, ce.CLOUDEVENT_CONTENT_TYPE, traceparent=TRACE)
    assert (event["id"], event["type"], event["source"]) == ("mine", "widget", "me")
    assert event["extra"] == 5
    assert (event["topic"], event["pubsubname"]) == ("orders", "pubsub")
    assert event["specversion"] == "1.0"
    assert event["time"] == "2024-01-02T03:04:05Z"
    assert event["traceparent"] == TRACE


def test_user_cloudevent_gets_defaults_when_fields_are_missing():
    event = build(b'{"data": "x"}', ce.CLOUDEVENT_CONTENT_TYPE)
    assert (event["id"], event["source"], event["type"]) == ("id-1", "Dapr", ce.EVENT_TYPE)


@pytest.mark.parametrize("body", [b"nope", b"[1, 2]"])
def test_user_cloudevent_must_be_a_json_object(body):
    with pytest.raises(ce.InvalidCloudEvent):
        build(body, ce.CLOUDEVENT_CONTENT_TYPE)


def test_cloudevent_metadata_overrides_fields_case_insensitively():
    md = {
        "cloudevent.id": "over-id",
        "CloudEvent.Type": "over.type",
        "cloudevent.source": "over-src",
        "cloudevent.subject": "subj",
        "cloudevent.traceid": "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01",
        "cloudevent.traceparent": TRACE,
    }
    event = build(b"x", metadata=md)
    assert (event["id"], event["type"], event["source"]) == ("over-id", "over.type", "over-src")
    assert event["subject"] == "subj"
    assert event["traceparent"] == event["traceid"] == TRACE  # traceparent wins over traceid


def test_ttl_adds_expiration_and_expired_events_are_recognised():
    event = build(b"x", metadata={"ttlInSeconds": "30"})
    assert event["expiration"] == "2024-01-02T03:04:35Z"
    assert not ce.expired(event, now=NOW)
    assert ce.expired(event, now=datetime(2024, 1, 2, 3, 5, tzinfo=UTC))
    assert not ce.expired({"id": "no-expiration"})


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({"ttlInSeconds": "soon"}, ce.MetadataError),
        ({"ttlInSeconds": "-1"}, ce.MetadataError),
    ],
)
def test_malformed_metadata_is_refused(metadata, error):
    with pytest.raises(error):
        build(b"x", metadata=metadata)


@pytest.mark.parametrize(
    ("value", "raw"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("0", False), (None, False)],
)
def test_raw_payload_reads_go_booleans(value, raw):
    md = {} if value is None else {"rawPayload": value}
    assert ce.is_raw_payload(md) is raw


def test_raw_payload_value_that_is_not_a_boolean_is_refused():
    with pytest.raises(ce.MetadataError):
        ce.is_raw_payload({"rawPayload": "maybe"})


def test_stored_cloudevent_is_read_back_as_is():
    event = build(b"x")
    assert ce.from_message(ce.encode(event), topic="orders", pubsub_name="pubsub") == event


@pytest.mark.parametrize("raw_subscription", [True, False])
def test_non_cloudevent_messages_and_raw_subscriptions_get_a_synthetic_event(raw_subscription):
    data = b"plain bytes" if not raw_subscription else ce.encode(build(b"x"))
    event = ce.from_message(data, topic="orders", pubsub_name="pubsub", raw=raw_subscription)
    assert event["datacontenttype"] == "application/octet-stream"
    assert base64.b64decode(event["data_base64"]) == data
    assert (event["topic"], event["pubsubname"], event["specversion"]) == (
        "orders",
        "pubsub",
        "1.0",
    )


def test_a_stored_cloudevent_is_delivered_as_the_stored_bytes():
    # As Dapr: the app receives the broker's bytes, not a re-encoding of them.
    stored = b'{ "specversion": "1.0", "id": "x",  "data": {"n": 1.50}, "t\\u00e9": 1 }'
    event, body = ce.read_message(stored, topic="orders", pubsub_name="pubsub")
    assert body == stored
    assert event == orjson.loads(stored)


@pytest.mark.parametrize("raw_subscription", [True, False])
def test_a_synthetic_event_is_delivered_encoded(raw_subscription):
    data = b"plain bytes" if not raw_subscription else ce.encode(build(b"x"))
    event, body = ce.read_message(data, topic="orders", pubsub_name="pubsub", raw=raw_subscription)
    assert orjson.loads(body) == event
    assert base64.b64decode(event["data_base64"]) == data


@pytest.mark.parametrize(
    "text",
    [
        "18446744073709551615",  # the largest integer orjson keeps
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "1796069893798123456",
        "NaN",
        "1e400",
        '"\\ud800"',
        '{"a": [1, 2.5, "x", null, true]}',
    ],
)
def test_json_data_is_read_as_the_stdlib_reads_it(text):
    import json

    event = build(text.encode(), "application/json")
    expected = json.loads(text)
    if expected != expected:  # NaN
        assert event["data"] != event["data"]
    else:
        assert event["data"] == expected
        assert type(event["data"]) is type(expected)
