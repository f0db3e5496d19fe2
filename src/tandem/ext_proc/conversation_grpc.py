"""The conversation RPCs (``ConverseAlpha1``, ``ConverseAlpha2``): proto in, proto out.

Pure translation between the wire messages and the block's :mod:`model`; the HTTP routes
parse their JSON into the same protos (as Dapr does) and come through here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dapr.proto.runtime.v1 import ai_pb2

# struct_pb2 and wrappers_pb2 are imported for their registration: parameters arrive as Any
# of these well-known types (the SDK's conversion), which JSON parsing looks up by type URL.
from google.protobuf import any_pb2, json_format, struct_pb2, wrappers_pb2  # noqa: F401

from tandem.blocks.conversation.model import (
    Message,
    Request,
    Result,
    Role,
    Tool,
    ToolCall,
)
from tandem.blocks.conversation.scrub import scrub
from tandem.blocks.conversation.service import ConversationService
from tandem.blocks.errors import DaprError
from tandem.ext_proc.grpc_api import Rpc

_ROLES = {r.value: r for r in Role}
_TOOL_CHOICES = ("none", "auto", "required")


def invalid(message: str) -> DaprError:
    return DaprError("ERR_CONVERSATION_INVALID_PARMS", message)


def parameters(params: Mapping[str, any_pb2.Any]) -> dict[str, Any]:
    """``parameters`` as plain JSON values: a wrapper (StringValue, Int64Value, ...) gives
    its value, any other known message its JSON object."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        try:
            as_json = json_format.MessageToDict(value)
        except (TypeError, json_format.Error) as exc:
            raise invalid(f"parameter {key}: {exc}") from None
        as_json.pop("@type", None)
        out[key] = as_json["value"] if set(as_json) == {"value"} else as_json
    return out


def _text(content: Any) -> str:
    return "".join(part.text for part in content)


def _calls(calls: Any) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(c.id, c.function.name, c.function.arguments)
        for c in calls
        if c.WhichOneof("tool_types") == "function"
    )


def alpha1_request(req: ai_pb2.ConversationRequest) -> tuple[Request, bool]:
    """The block's request and whether answers are scrubbed."""
    messages = []
    for i, inp in enumerate(req.inputs):
        role_name = inp.role if inp.HasField("role") and inp.role else "user"
        role = _ROLES.get(role_name)
        if role is None:
            raise invalid(f"input {i}: unknown role {role_name!r}")
        text = scrub(inp.content) if inp.scrubPII else inp.content
        messages.append(Message(role, text))
    request = Request(
        messages=tuple(messages),
        temperature=req.temperature if req.HasField("temperature") else None,
        parameters=parameters(req.parameters),
        metadata=dict(req.metadata),
    )
    return request, req.scrubPII


def alpha1_response(req: ai_pb2.ConversationRequest, result: Result) -> ai_pb2.ConversationResponse:
    out = ai_pb2.ConversationResponse()
    if req.HasField("contextID"):
        out.contextID = req.contextID
    for choice in result.choices:
        item = out.outputs.add(result=choice.text)
        for key, value in req.parameters.items():
            item.parameters[key].CopyFrom(value)
    return out


def _message(m: ai_pb2.ConversationMessage, scrubbing: bool) -> Message:
    kind = m.WhichOneof("message_types")
    if kind is None:
        raise invalid("a message names none of ofDeveloper, ofSystem, ofUser, ofAssistant, ofTool")
    body = getattr(m, kind)

    def text() -> str:
        joined = _text(body.content)
        return scrub(joined) if scrubbing else joined

    if kind == "of_tool":
        tool_id = body.tool_id if body.HasField("tool_id") else None
        return Message(Role.TOOL, text(), body.name or None, tool_call_id=tool_id)
    name = body.name if body.HasField("name") and body.name else None
    if kind == "of_assistant":
        return Message(Role.ASSISTANT, text(), name, tool_calls=_calls(body.tool_calls))
    return Message(_ROLES[kind.removeprefix("of_")], text(), name)


def _tool(t: ai_pb2.ConversationTools) -> Tool:
    if t.WhichOneof("tool_types") != "function" or not t.function.name:
        raise invalid("a tool must be a function with a name")
    fn = t.function
    return Tool(
        fn.name,
        fn.description if fn.HasField("description") else None,
        json_format.MessageToDict(fn.parameters),
    )


def alpha2_request(req: ai_pb2.ConversationRequestAlpha2) -> tuple[Request, bool]:
    messages = tuple(_message(m, inp.scrub_pii) for inp in req.inputs for m in inp.messages)
    tools = tuple(_tool(t) for t in req.tools)
    choice = req.tool_choice if req.HasField("tool_choice") and req.tool_choice else None
    known = {*_TOOL_CHOICES, *(t.name for t in tools)}
    if choice is not None and choice not in known:
        raise invalid(f"toolChoice {choice!r} is neither none, auto, required nor a tool")
    if choice in ("auto", "required") and not tools:
        raise invalid(f"toolChoice {choice!r} needs tools")
    request = Request(
        messages=messages,
        tools=tools,
        tool_choice=choice,
        response_format=(
            json_format.MessageToDict(req.response_format)
            if req.HasField("response_format")
            else None
        ),
        temperature=req.temperature if req.HasField("temperature") else None,
        max_tokens=req.max_tokens if req.HasField("max_tokens") else None,
        prompt_cache_retention=(
            req.prompt_cache_retention.ToTimedelta().total_seconds()
            if req.HasField("prompt_cache_retention")
            else None
        ),
        parameters=parameters(req.parameters),
        metadata=dict(req.metadata),
    )
    if request.max_tokens is not None and request.max_tokens <= 0:
        raise invalid("maxTokens must be positive")
    return request, req.scrub_pii


def alpha2_response(
    req: ai_pb2.ConversationRequestAlpha2, result: Result
) -> ai_pb2.ConversationResponseAlpha2:
    out = ai_pb2.ConversationResponseAlpha2()
    if req.HasField("context_id"):
        out.context_id = req.context_id
    item = out.outputs.add()
    if result.model:
        item.model = result.model
    for choice in result.choices:
        c = item.choices.add(finish_reason=choice.finish_reason, index=choice.index)
        c.message.content = choice.text
        for call in choice.tool_calls:
            tc = c.message.tool_calls.add(id=call.id)
            tc.function.name = call.name
            tc.function.arguments = call.arguments
    u = result.usage
    if u is not None:
        usage = item.usage
        usage.prompt_tokens = u.prompt_tokens
        usage.completion_tokens = u.completion_tokens
        usage.total_tokens = u.total_tokens
        if u.cached_prompt_tokens:
            usage.prompt_tokens_details.cached_tokens = u.cached_prompt_tokens
        if u.reasoning_tokens:
            usage.completion_tokens_details.reasoning_tokens = u.reasoning_tokens
    return out


async def converse_alpha1(
    service: ConversationService, req: ai_pb2.ConversationRequest
) -> ai_pb2.ConversationResponse:
    service.component(req.name)
    request, scrub_answers = alpha1_request(req)
    result = await service.converse(req.name, request, scrub_answers=scrub_answers)
    return alpha1_response(req, result)


async def converse_alpha2(
    service: ConversationService, req: ai_pb2.ConversationRequestAlpha2
) -> ai_pb2.ConversationResponseAlpha2:
    service.component(req.name)
    request, scrub_answers = alpha2_request(req)
    result = await service.converse(req.name, request, scrub_answers=scrub_answers)
    return alpha2_response(req, result)


def rpcs(service: ConversationService) -> dict[str, Rpc]:
    async def alpha1(req: ai_pb2.ConversationRequest) -> ai_pb2.ConversationResponse:
        return await converse_alpha1(service, req)

    async def alpha2(req: ai_pb2.ConversationRequestAlpha2) -> ai_pb2.ConversationResponseAlpha2:
        return await converse_alpha2(service, req)

    return {"ConverseAlpha1": alpha1, "ConverseAlpha2": alpha2}
