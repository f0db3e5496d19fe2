"""The conversation API over HTTP: the gRPC messages' JSON form (:mod:`proto_json`), so
both doors share :mod:`conversation_grpc`'s translation."""

from __future__ import annotations

from dapr.proto.runtime.v1 import ai_pb2

from tandem.blocks.conversation.service import ConversationService
from tandem.ext_proc import conversation_grpc
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.proto_json import parse, render
from tandem.ext_proc.router import Router


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
