"""A job's ``data`` between the two APIs: JSON on HTTP, ``google.protobuf.Any`` on gRPC.

JSON from the HTTP API is kept as a ``google.protobuf.Value``; a Value reads back (and
reaches an HTTP app) as the same JSON. Any other message reads back as its proto-JSON
(``{"@type": ..., ...}``), or, when its type is not known here, as the type URL and the
base64 of its bytes.
"""

from __future__ import annotations

import base64

import orjson
from google.protobuf import any_pb2, json_format, struct_pb2

_VALUE = "type.googleapis.com/google.protobuf.Value"


def any_from_json(value: object) -> bytes:
    """The serialized Any carrying ``value`` (None: an empty Any)."""
    packed = any_pb2.Any()
    if value is not None:
        msg = struct_pb2.Value()
        json_format.ParseDict(value, msg)
        packed.Pack(msg)
    return packed.SerializeToString()


def json_from_any(data: bytes) -> object:
    """The JSON an HTTP caller or app sees for the serialized Any ``data`` (None if empty)."""
    packed = any_pb2.Any.FromString(data)
    if not packed.type_url:
        return None
    if packed.type_url == _VALUE:
        msg = struct_pb2.Value()
        packed.Unpack(msg)
        return json_format.MessageToDict(msg)
    try:
        return orjson.loads(json_format.MessageToJson(packed))
    except (json_format.Error, TypeError):
        return {"@type": packed.type_url, "value": base64.b64encode(packed.value).decode()}


def body_from_any(data: bytes) -> bytes:
    """The body of ``POST /job/<name>`` to an HTTP app."""
    value = json_from_any(data)
    return b"" if value is None else orjson.dumps(value)
