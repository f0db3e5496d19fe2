"""The conversation block without a sidecar: echo, the OpenAI component against a server
speaking the wire format, scrubbing, the response cache, Resiliency and error answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dapr.proto.runtime.v1 import ai_pb2
from google.protobuf import any_pb2, wrappers_pb2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from openai_server import MODEL, OpenAIServer
from tandem.blocks.conversation.model import Message, Request, Role
from tandem.blocks.conversation.scrub import scrub
from tandem.blocks.conversation.service import ConversationService
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.resiliency import Resilient
from tandem.cli.ports import free_port
from tandem.ext_proc import conversation_grpc
from tandem.observability.export import TraceExport
from tandem.observability.tracing import Tracing
from tandem.resources.resiliency import Policy, RetryPolicy


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.stop()


def _retry(n: int) -> Resilient:
    policy = Policy(retry=RetryPolicy(policy="constant", duration=timedelta(0), max_retries=n))
    return Resilient(policy, "llm")


@pytest.fixture
async def service(llm: OpenAIServer, tmp_path: Path) -> AsyncIterator[ConversationService]:
    specs = [
        ComponentSpec("echo", "conversation.echo"),
        ComponentSpec(
            "llm", "conversation.openai", metadata={"endpoint": llm.endpoint, "model": MODEL}
        ),
        ComponentSpec(
            "cached",
            "conversation.openai",
            metadata={"endpoint": llm.endpoint, "key": "k", "cacheTTL": "1m"},
        ),
    ]
    svc = ConversationService.from_specs(
        specs, ComponentContext("app", home=tmp_path), lambda n: _retry(2) if n == "llm" else None
    )
    yield svc
    await svc.close()


def user(text: str, scrub_pii: bool = False) -> ai_pb2.ConversationInputAlpha2:
    m = ai_pb2.ConversationMessage()
    m.of_user.content.add(text=text)
    return ai_pb2.ConversationInputAlpha2(messages=[m], scrub_pii=scrub_pii)


WEATHER = ai_pb2.ConversationTools()
WEATHER.function.name = "get_weather"
WEATHER.function.description = "the weather at a place"
WEATHER.function.parameters.update(
    {"type": "object", "properties": {"location": {"type": "string"}}}
)


async def test_echo_alpha1_answers_each_input_with_parameters_and_context(
    service: ConversationService,
) -> None:
    param = any_pb2.Any()
    param.Pack(wrappers_pb2.StringValue(value="v"))
    req = ai_pb2.ConversationRequest(
        name="echo",
        contextID="ctx-1",
        inputs=[
            ai_pb2.ConversationInput(content="hello"),
            ai_pb2.ConversationInput(content="again", role="assistant"),
        ],
        parameters={"p": param},
    )
    resp = await conversation_grpc.converse_alpha1(service, req)
    assert resp.contextID == "ctx-1"
    assert [o.result for o in resp.outputs] == ["hello", "again"]
    assert resp.outputs[0].parameters["p"] == param


async def test_echo_alpha2_echoes_messages_tool_calls_and_usage(
    service: ConversationService,
) -> None:
    assistant = ai_pb2.ConversationMessage()
    assistant.of_assistant.tool_calls.add(id="c1").function.name = "get_weather"
    req = ai_pb2.ConversationRequestAlpha2(name="echo", inputs=[user("hi there")])
    req.inputs[0].messages.append(assistant)
    resp = await conversation_grpc.converse_alpha2(service, req)
    (out,) = resp.outputs
    assert [c.message.content for c in out.choices] == ["hi there", ""]
    assert out.choices[0].finish_reason == "stop"
    assert out.choices[1].finish_reason == "tool_calls"
    assert out.choices[1].message.tool_calls[0].function.name == "get_weather"
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens > 0


async def test_openai_tool_call_round_trip(service: ConversationService, llm: OpenAIServer) -> None:
    req = ai_pb2.ConversationRequestAlpha2(
        name="llm", inputs=[user("weather in Paris")], tools=[WEATHER], tool_choice="auto"
    )
    req.prompt_cache_retention.FromTimedelta(timedelta(hours=24))
    resp = await conversation_grpc.converse_alpha2(service, req)
    (out,) = resp.outputs
    assert out.model == MODEL
    (choice,) = out.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert call.function.arguments == '{"location": "Paris"}'
    assert (out.usage.prompt_tokens, out.usage.total_tokens) == (7, 12)
    assert out.usage.prompt_tokens_details.cached_tokens == 3
    sent = llm.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tool_choice"] == "auto"
    assert sent["prompt_cache_retention"] == "24h"

    # The tool's answer goes back as a tool message tied to the call.
    tool_msg = ai_pb2.ConversationMessage()
    tool_msg.of_tool.tool_id = "call_1"
    tool_msg.of_tool.name = "get_weather"
    tool_msg.of_tool.content.add(text="sunny")
    follow = ai_pb2.ConversationRequestAlpha2(name="llm", inputs=[user("weather in Paris")])
    recalled = ai_pb2.ConversationMessage()
    recalled.of_assistant.tool_calls.extend(choice.message.tool_calls)
    follow.inputs[0].messages.append(recalled)
    follow.inputs[0].messages.append(tool_msg)
    await conversation_grpc.converse_alpha2(service, follow)
    sent = llm.requests[-1]["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


async def test_a_5xx_is_retried_by_the_resiliency_policy(
    service: ConversationService, llm: OpenAIServer
) -> None:
    req = ai_pb2.ConversationRequestAlpha2(name="llm", inputs=[user("flaky unit")])
    resp = await conversation_grpc.converse_alpha2(service, req)
    assert resp.outputs[0].choices[0].message.content == "you said: flaky unit"
    assert [r["messages"][-1]["content"] for r in llm.requests[-2:]] == ["flaky unit"] * 2


async def test_a_refusal_is_not_retried_and_answers_err_conversation_invoke(
    service: ConversationService, llm: OpenAIServer
) -> None:
    before = len(llm.requests)
    req = ai_pb2.ConversationRequestAlpha2(name="llm", inputs=[user("refuse")])
    with pytest.raises(DaprError) as err:
        await conversation_grpc.converse_alpha2(service, req)
    assert err.value.error_code == "ERR_CONVERSATION_INVOKE"
    assert err.value.http_status == 500
    assert len(llm.requests) == before + 1


async def test_cache_ttl_answers_a_repeated_request_from_memory(
    service: ConversationService, llm: OpenAIServer
) -> None:
    req = ai_pb2.ConversationRequestAlpha2(name="cached", inputs=[user("remember me")])
    first = await conversation_grpc.converse_alpha2(service, req)
    before = len(llm.requests)
    second = await conversation_grpc.converse_alpha2(service, req)
    assert second == first
    assert len(llm.requests) == before


async def test_scrub_pii_on_inputs_and_answers(
    service: ConversationService, llm: OpenAIServer
) -> None:
    req = ai_pb2.ConversationRequestAlpha2(
        name="llm", inputs=[user("mail jane@example.com", scrub_pii=True)]
    )
    await conversation_grpc.converse_alpha2(service, req)
    assert llm.requests[-1]["messages"][0]["content"] == "mail <EMAIL_ADDRESS>"

    # Request-level scrubPii cleans the answer (the echo repeats the address back).
    req = ai_pb2.ConversationRequestAlpha2(
        name="echo", inputs=[user("ip 10.1.2.3")], scrub_pii=True
    )
    resp = await conversation_grpc.converse_alpha2(service, req)
    assert resp.outputs[0].choices[0].message.content == "ip <IP_ADDRESS>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to a.b@example.org today", "write to <EMAIL_ADDRESS> today"),
        ("card 4111 1111 1111 1111", "card <CREDIT_CARD>"),
        ("order 4111 1111 1111 1112", "order 4111 1111 1111 1112"),  # fails Luhn
        ("ssn 123-45-6789", "ssn <US_SSN>"),
        ("call +1 415-555-0132 now", "call <PHONE_NUMBER> now"),
        ("see https://example.com/x?y=1", "see <URL>"),
        ("host fe80::1 and 192.168.0.7", "host <IP_ADDRESS> and <IP_ADDRESS>"),
        ("meet at 12:30", "meet at 12:30"),
    ],
)
def test_scrub_patterns(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (
            ai_pb2.ConversationRequestAlpha2(name="nope", inputs=[user("x")]),
            "ERR_CONVERSATION_NOT_FOUND",
        ),
        (ai_pb2.ConversationRequestAlpha2(name="echo"), "ERR_CONVERSATION_MISSING_INPUTS"),
        (
            ai_pb2.ConversationRequestAlpha2(name="echo", inputs=[user("x")], tool_choice="dance"),
            "ERR_CONVERSATION_INVALID_PARMS",
        ),
        (
            ai_pb2.ConversationRequestAlpha2(
                name="echo",
                inputs=[ai_pb2.ConversationInputAlpha2(messages=[ai_pb2.ConversationMessage()])],
            ),
            "ERR_CONVERSATION_INVALID_PARMS",
        ),
    ],
)
async def test_bad_requests_get_400s(
    service: ConversationService, request_: ai_pb2.ConversationRequestAlpha2, code: str
) -> None:
    with pytest.raises(DaprError) as err:
        await conversation_grpc.converse_alpha2(service, request_)
    assert (err.value.error_code, err.value.http_status) == (code, 400)


async def test_alpha1_unknown_role_is_invalid(service: ConversationService) -> None:
    req = ai_pb2.ConversationRequest(
        name="echo", inputs=[ai_pb2.ConversationInput(content="x", role="wizard")]
    )
    with pytest.raises(DaprError) as err:
        await conversation_grpc.converse_alpha1(service, req)
    assert err.value.error_code == "ERR_CONVERSATION_INVALID_PARMS"


async def test_echo_request_model_is_plain(service: ConversationService) -> None:
    result = await service.converse("echo", Request((Message(Role.USER, "a"),)))
    assert result.choices[0].text == "a"


async def test_each_call_is_a_client_span_marked_failed_on_error(
    service: ConversationService,
) -> None:
    export = TraceExport(
        sampling_rate=1.0, exporter="zipkin", host="127.0.0.1", port=free_port(), path=""
    )  # type: ignore[arg-type]
    tracing = Tracing(export, "app")
    memory = InMemorySpanExporter()
    # Read the spans as they end, beside the (unreachable) collector's exporter.
    assert tracing._provider is not None
    tracing._provider.add_span_processor(SimpleSpanProcessor(memory))
    service.tracing = tracing
    try:
        await service.converse("echo", Request((Message(Role.USER, "a"),)))
        with pytest.raises(DaprError):
            await service.converse("llm", Request((Message(Role.USER, "refuse"),)))
    finally:
        tracing.shutdown()
    ok, failed = memory.get_finished_spans()
    assert (ok.name, ok.kind) == ("conversation/echo", SpanKind.CLIENT)
    assert ok.attributes is not None and ok.attributes["dapr.component.type"] == "conversation.echo"
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.name == "conversation/llm"
    assert failed.status.status_code is StatusCode.ERROR
