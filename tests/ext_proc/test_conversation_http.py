"""The conversation routes in process: JSON bodies are the gRPC requests' JSON form, and bad
input gets Dapr's codes (the doors themselves are covered end to end)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tandem.blocks.conversation.service import ConversationService
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.ext_proc import conversation_http
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.dispatch import Dispatcher
from tandem.ext_proc.router import Router


@pytest.fixture
def dispatch(tmp_path: Path) -> Dispatcher:
    service = ConversationService.from_specs(
        [ComponentSpec("echo", "conversation.echo")], ComponentContext("app", home=tmp_path)
    )
    router = Router()
    conversation_http.register(router, service)
    return Dispatcher(router)


async def call(dispatch: Dispatcher, version: str, body: object) -> ApiResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    path = f"/v1.0-{version}/conversation/echo/converse"
    return await dispatch(ApiRequest("POST", path, "", {}, raw, app_id="app"))


async def test_parameters_travel_as_typed_json_and_come_back(dispatch: Dispatcher) -> None:
    param = {"@type": "type.googleapis.com/google.protobuf.DoubleValue", "value": 0.5}
    resp = await call(
        dispatch, "alpha1", {"inputs": [{"content": "hi"}], "parameters": {"top_p": param}}
    )
    assert resp.status == 200
    assert orjson.loads(resp.body) == {
        "outputs": [{"result": "hi", "parameters": {"top_p": param}}]
    }


@pytest.mark.parametrize(
    ("version", "body", "code"),
    [
        ("alpha2", b"[1, 2", "ERR_MALFORMED_REQUEST"),
        ("alpha2", {"inputs": "not a list"}, "ERR_MALFORMED_REQUEST"),
        (
            "alpha1",
            {"inputs": [{"content": "x", "role": "wizard"}]},
            "ERR_CONVERSATION_INVALID_PARMS",
        ),
        (
            "alpha1",
            {
                "inputs": [{"content": "x"}],
                "parameters": {"p": {"@type": "type.googleapis.com/no.such.Type", "value": 1}},
            },
            "ERR_MALFORMED_REQUEST",
        ),
        (
            "alpha2",
            {
                "inputs": [{"messages": [{"ofUser": {"content": [{"text": "x"}]}}]}],
                "toolChoice": "get_weather",
            },
            "ERR_CONVERSATION_INVALID_PARMS",
        ),
        ("alpha2", {}, "ERR_CONVERSATION_MISSING_INPUTS"),
    ],
)
async def test_bad_input_gets_daprs_codes(
    dispatch: Dispatcher, version: str, body: object, code: str
) -> None:
    resp = await call(dispatch, version, body)
    assert resp.status == 400
    assert orjson.loads(resp.body)["errorCode"] == code
