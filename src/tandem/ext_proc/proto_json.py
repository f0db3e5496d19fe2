"""Dapr's HTTP form of its newer APIs (conversation, subtle crypto): the body is the gRPC
request's JSON form, unknown fields dropped, and the answer the response's JSON form with
unset fields left out."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiResponse

M = TypeVar("M", bound=Message)


def parse(body: bytes, msg: M) -> M:
    if not body:
        return msg
    try:
        json_format.Parse(body, msg, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise DaprError("ERR_MALFORMED_REQUEST", f"failed to parse request body: {exc}") from None
    return msg


def render(msg: Message) -> ApiResponse:
    return ApiResponse(status=200, body=json_format.MessageToJson(msg, indent=None).encode())
