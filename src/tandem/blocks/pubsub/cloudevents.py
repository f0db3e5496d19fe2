"""The CloudEvents 1.0 envelope Dapr wraps published data in — pure functions.

Publisher side: :func:`envelope` builds the event from the request body, its content type
and the request metadata (``cloudevent.*`` overrides, ``ttlInSeconds``), or completes a
body that already is a CloudEvent (``application/cloudevents+json``). Subscriber side:
:func:`from_message` reads a broker message back as an event, wrapping anything that is
not a CloudEvent (raw payloads) in a synthetic one, and :func:`expired` checks ``expiration``.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPE = "com.dapr.event.sent"
SPEC_VERSION = "1.0"
DEFAULT_SOURCE = "Dapr"
DEFAULT_CONTENT_TYPE = "text/plain"
OCTET_STREAM = "application/octet-stream"

RAW_PAYLOAD = "rawPayload"
TTL_IN_SECONDS = "ttlInSeconds"
_OVERRIDE_PREFIX = "cloudevent."
_OVERRIDABLE = ("id", "source", "type", "subject")
# Maybe an integer orjson cannot hold (below -2**63 or above 2**64 - 1): 20 digits in a
# row, or 19 after a minus (or only digits in a string: the slower path, same value).
_LONG_DIGITS = re.compile(rb"-[0-9]{19}|[0-9]{20}")


class EnvelopeError(ValueError):
    """The request cannot be turned into a CloudEvent."""


class MetadataError(EnvelopeError):
    """A metadata value (``rawPayload``, ``ttlInSeconds``) is malformed."""


class InvalidCloudEvent(EnvelopeError):
    """A body sent as ``application/cloudevents+json`` is not a JSON object."""


def parse_bool(name: str, value: str | None) -> bool:
    """A boolean metadata value as Go's ``strconv.ParseBool`` reads it; else EnvelopeError."""
    if value is None or value == "":
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise MetadataError(f"metadata {name}: {value!r} is not a boolean")


def is_raw_payload(metadata: Mapping[str, str]) -> bool:
    return parse_bool(RAW_PAYLOAD, _get(metadata, RAW_PAYLOAD))


def parse_ttl(metadata: Mapping[str, str]) -> int | None:
    raw = _get(metadata, TTL_IN_SECONDS)
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise MetadataError(f"metadata {TTL_IN_SECONDS}: {raw!r} is not an integer") from None
    if ttl < 0:
        raise MetadataError(f"metadata {TTL_IN_SECONDS}: must not be negative")
    return ttl


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` → ``application/json`` (lower-cased)."""
    return content_type.split(";", 1)[0].strip().lower()


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, seconds precision unless there are sub-seconds."""
    t = t.astimezone(UTC)
    text = t.isoformat(timespec="microseconds" if t.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def envelope(
    data: bytes,
    *,
    content_type: str,
    topic: str,
    pubsub_name: str,
    source: str,
    metadata: Mapping[str, str] | None = None,
    traceparent: str = "",
    tracestate: str = "",
    now: datetime | None = None,
    new_id: str | None = None,
) -> dict[str, Any]:
    """The CloudEvent Dapr publishes for ``data``.

    A body sent as ``application/cloudevents+json`` is the user's own event: it must be a
    JSON object; missing ``id``/``source``/``type``/``specversion``/``time`` are filled in
    and the trace, ``topic`` and ``pubsubname`` fields are always overwritten.
    """
    md = metadata or {}
    now = now or datetime.now(UTC)
    overrides = _overrides(md)
    trace = overrides.get("traceparent") or overrides.get("traceid") or traceparent
    state = overrides.get("tracestate", tracestate)
    if media_type(content_type) == CLOUDEVENT_CONTENT_TYPE:
        event = _user_event(data)
        event.setdefault("id", new_id or str(uuid.uuid4()))
        event.setdefault("source", DEFAULT_SOURCE)
        event.setdefault("type", EVENT_TYPE)
        event.setdefault("specversion", SPEC_VERSION)
        event.setdefault("time", format_time(now))
        if "datacontenttype" not in event and "data" in event:
            event["datacontenttype"] = "application/json"
    else:
        ct = content_type or DEFAULT_CONTENT_TYPE
        event = {
            "specversion": SPEC_VERSION,
            "id": new_id or str(uuid.uuid4()),
            "source": source or DEFAULT_SOURCE,
            "type": EVENT_TYPE,
            "datacontenttype": ct,
            "time": format_time(now),
        }
        event.update(data_fields(data, ct))
    for key in _OVERRIDABLE:
        if overrides.get(key):
            event[key] = overrides[key]
    event["topic"] = topic
    event["pubsubname"] = pubsub_name
    event["traceid"] = trace
    event["traceparent"] = trace
    event["tracestate"] = state
    ttl = parse_ttl(md)
    if ttl is not None:
        event["expiration"] = format_time(now + timedelta(seconds=ttl))
    return event


def data_fields(data: bytes, content_type: str) -> dict[str, Any]:
    """``data`` or ``data_base64`` for a payload of the given content type (Dapr's rules:
    exactly ``application/json`` is parsed, octet-stream is base64, the rest is text)."""
    kind = media_type(content_type)
    if kind == OCTET_STREAM:
        return {"data_base64": base64.b64encode(data).decode("ascii")}
    if kind == "application/json":
        return {"data": _json_or_text(data)}
    return {"data": data.decode("utf-8", "replace")}


def encode(event: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(event)
    except TypeError:  # integers beyond 64 bits survive only the stdlib encoder
        return json.dumps(event, separators=(",", ":")).encode()


def from_raw(
    data: bytes, *, topic: str, pubsub_name: str, new_id: str | None = None
) -> dict[str, Any]:
    """The synthetic event a raw-payload subscription receives: the bytes in ``data_base64``."""
    return {
        "specversion": SPEC_VERSION,
        "id": new_id or str(uuid.uuid4()),
        "source": DEFAULT_SOURCE,
        "type": EVENT_TYPE,
        "datacontenttype": OCTET_STREAM,
        "data_base64": base64.b64encode(data).decode("ascii"),
        "topic": topic,
        "pubsubname": pubsub_name,
    }


def from_message(data: bytes, *, topic: str, pubsub_name: str, raw: bool = False) -> dict[str, Any]:
    """A broker message as the event to deliver: the stored CloudEvent, or — for raw
    subscriptions and for messages that are not CloudEvents — a synthetic one."""
    return read_message(data, topic=topic, pubsub_name=pubsub_name, raw=raw)[0]


def read_message(
    data: bytes, *, topic: str, pubsub_name: str, raw: bool = False
) -> tuple[dict[str, Any], bytes]:
    """:func:`from_message`, and the body an HTTP app receives for it: the stored bytes
    themselves when they are the CloudEvent (as Dapr sends them; no decode and re-encode
    per delivery), else the synthetic event encoded."""
    if not raw:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict) and "specversion" in value and "id" in value:
            return value, data
    event = from_raw(data, topic=topic, pubsub_name=pubsub_name)
    return event, encode(event)


def expired(event: Mapping[str, Any], now: datetime | None = None) -> bool:
    raw = event.get("expiration")
    if not isinstance(raw, str) or not raw:
        return False
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when <= (now or datetime.now(UTC))


def _user_event(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise InvalidCloudEvent(f"the body is not a valid CloudEvent: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidCloudEvent("the body is not a valid CloudEvent: not a JSON object")
    return value


def _json_or_text(data: bytes) -> Any:
    # orjson when no number could be past 64 bits (it turns those into floats), else the
    # stdlib parser, which keeps integers of any size exact and takes what orjson refuses
    # (NaN, lone surrogates): the same value either way, orjson ~15x faster per publish.
    if not _LONG_DIGITS.search(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def _overrides(metadata: Mapping[str, str]) -> dict[str, str]:
    return {
        k[len(_OVERRIDE_PREFIX) :].lower(): v
        for k, v in metadata.items()
        if k.lower().startswith(_OVERRIDE_PREFIX)
    }


def _get(metadata: Mapping[str, str], name: str) -> str | None:
    found = metadata.get(name)
    if found is not None:
        return found
    lowered = name.lower()
    return next((v for k, v in metadata.items() if k.lower() == lowered), None)
