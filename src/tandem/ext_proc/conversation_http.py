"""The conversation API over HTTP: Dapr parses the body as the gRPC request's JSON form
(unknown fields dropped) and answers with the response's JSON form, so both doors share
:mod:`conversation_grpc`'s translation."""

from __future__ import annotations

from typing import TypeVar

from dapr.proto.runtime.v1 import ai_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from tandem.blocks.conversation.service import ConversationService
from tandem.blocks.errors import DaprError
from tandem.ext_proc import conversation_grpc
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

M = TypeVar("M", bound=Message)


def register(router: Router, service: ConversationService) -> None:
    async def alpha1(req: ApiRequest) -> ApiResponse:
        name = req.params["component"]
        service.component(name)
        msg = parse(req.body, ai_pb2.ConversationRequest())
        msg.name = name
        return render(await conversation_grpc.converse_alpha1(service, msg))

    async def alpha2(req: ApiRequest) -> ApiResponse:
        name = req.params["component"]
        service.component(name)
        msg = parse(req.body, ai_pb2.ConversationRequestAlpha2())
        msg.name = name
        return render(await conversation_grpc.converse_alpha2(service, msg))

    router.add("POST", "/v1.0-alpha1/conversation/{component}/converse", alpha1)
    router.add("POST", "/v1.0-alpha2/conversation/{component}/converse", alpha2)


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
