"""The conversation and cryptography APIs through a real `tandem run`, over both HTTP doors
(HTTP/1.1 and ext_proc) and gRPC, with the official SDK; ``conversation.openai`` talks to a
server speaking OpenAI's Chat Completions wire format that this module starts.

Two sidecars for the module (one per HTTP door), sharing one resources folder.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dapr.clients import DaprClient
from dapr.clients.grpc import conversation as conv
from dapr.clients.grpc._crypto import DecryptOptions, EncryptOptions
from dapr.conf import settings
from harness import TRANSPORTS, Sidecar, sidecar_per_door

from openai_server import MODEL, OpenAIServer

pytestmark = pytest.mark.filterwarnings("ignore:The (Encrypt|Decrypt) API is an Alpha")

RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: echo}}
spec:
  type: conversation.echo
  version: v1
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: llm}}
spec:
  type: conversation.openai
  version: v1
  metadata:
  - {{name: endpoint, value: "{endpoint}"}}
  - {{name: model, value: "{model}"}}
  - {{name: key, value: "local"}}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: vault}}
spec:
  type: crypto.dapr.localstorage
  version: v1
  metadata:
  - {{name: path, value: "{keys}"}}
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: llm-retries}}
spec:
  policies:
    retries:
      again: {{policy: constant, duration: 50ms, maxRetries: 3}}
  targets:
    components:
      llm: {{outbound: {{retry: again}}}}
"""


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sidecars(
    tandem_home: Path, tmp_path_factory: pytest.TempPathFactory, llm: OpenAIServer
) -> Iterator[dict[str, Sidecar]]:
    resources = tmp_path_factory.mktemp("res")
    keys = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (keys / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (keys / "aes").write_bytes(os.urandom(32))
    (keys / "other-aes").write_bytes(os.urandom(32))
    (resources / "components.yaml").write_text(
        RESOURCES.format(endpoint=llm.endpoint, model=MODEL, keys=keys)
    )
    with sidecar_per_door(
        tandem_home, "ai", "--resources-path", str(resources), "--dapr-http-max-request-size", "16"
    ) as started:
        yield started


@pytest.fixture(params=TRANSPORTS)
def sidecar(request: pytest.FixtureRequest, sidecars: dict[str, Sidecar]) -> Sidecar:
    return sidecars[str(request.param)]


@pytest.fixture
def api(sidecar: Sidecar) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.base, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def sdk(sidecars: dict[str, Sidecar]) -> Iterator[DaprClient]:
    side = sidecars["http"]
    # The SDK waits for the sidecar's HTTP health endpoint at DAPR_HTTP_PORT first.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settings, "DAPR_HTTP_PORT", side.http_port)
        with DaprClient(f"127.0.0.1:{side.grpc_port}") as client:
            yield client


# -- conversation ------------------------------------------------------------------------


def test_echo_alpha1_over_http(api: httpx.Client) -> None:
    body = {"inputs": [{"content": "hello", "role": "user"}], "contextID": "c1"}
    r = api.post("/v1.0-alpha1/conversation/echo/converse", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"contextID": "c1", "outputs": [{"result": "hello"}]}


def test_echo_alpha2_over_http(api: httpx.Client) -> None:
    body = {
        "inputs": [
            {"messages": [{"ofUser": {"content": [{"text": "hi there"}]}}], "scrubPii": False}
        ],
        "contextId": "c2",
    }
    r = api.post("/v1.0-alpha2/conversation/echo/converse", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["contextId"] == "c2"
    (result,) = out["outputs"]
    assert result["choices"] == [{"finishReason": "stop", "message": {"content": "hi there"}}]
    assert int(result["usage"]["totalTokens"]) > 0


def test_openai_tool_call_over_http(api: httpx.Client, llm: OpenAIServer) -> None:
    body = {
        "inputs": [{"messages": [{"ofUser": {"content": [{"text": "weather in Oslo"}]}}]}],
        "tools": [
            {
                "function": {
                    "name": "get_weather",
                    "description": "the weather at a place",
                    "parameters": {
                        "type": "object",
                        "properties": {"location": {"type": "string"}},
                    },
                }
            }
        ],
        "toolChoice": "auto",
    }
    r = api.post("/v1.0-alpha2/conversation/llm/converse", json=body)
    assert r.status_code == 200, r.text
    (result,) = r.json()["outputs"]
    assert result["model"] == MODEL
    (choice,) = result["choices"]
    assert choice["finishReason"] == "tool_calls"
    (call,) = choice["message"]["toolCalls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"location": "Oslo"}'}


def test_a_failing_endpoint_is_retried_by_resiliency(api: httpx.Client, sidecar: Sidecar) -> None:
    text = f"flaky {sidecar.app_id}"
    body = {"inputs": [{"content": text}]}
    r = api.post("/v1.0-alpha1/conversation/llm/converse", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == [{"result": f"you said: {text}"}]


def test_conversation_errors_over_http(api: httpx.Client) -> None:
    r = api.post("/v1.0-alpha2/conversation/nope/converse", json={"inputs": []})
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_CONVERSATION_NOT_FOUND")
    r = api.post("/v1.0-alpha2/conversation/echo/converse", content=b"{not json")
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
    r = api.post("/v1.0-alpha2/conversation/echo/converse", json={"inputs": []})
    assert (r.status_code, r.json()["errorCode"]) == (400, "ERR_CONVERSATION_MISSING_INPUTS")
    r = api.post("/v1.0-alpha1/conversation/llm/converse", json={"inputs": [{"content": "refuse"}]})
    assert (r.status_code, r.json()["errorCode"]) == (500, "ERR_CONVERSATION_INVOKE")
    # and the sidecar keeps serving
    r = api.post("/v1.0-alpha1/conversation/echo/converse", json={"inputs": [{"content": "ok"}]})
    assert r.status_code == 200


def test_sdk_converse_alpha1(sdk: DaprClient) -> None:
    resp = sdk.converse_alpha1(
        "echo", [conv.ConversationInput(content="from the sdk", role="user")], context_id="s1"
    )
    assert resp.context_id == "s1"
    assert [o.result for o in resp.outputs] == ["from the sdk"]


def test_sdk_converse_alpha2_with_tools(sdk: DaprClient) -> None:
    tool = conv.ConversationTools(
        function=conv.ConversationToolsFunction(
            name="get_weather",
            description="the weather at a place",
            parameters={"type": "object", "properties": {"location": {"type": "string"}}},
        )
    )
    resp = sdk.converse_alpha2(
        "llm",
        [conv.ConversationInputAlpha2(messages=[conv.create_user_message("weather in Rome")])],
        tools=[tool],
        tool_choice="auto",
    )
    choice = resp.outputs[0].choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert choice.message.tool_calls[0].function.arguments == '{"location": "Rome"}'

    echoed = sdk.converse_alpha2(
        "echo", [conv.ConversationInputAlpha2(messages=[conv.create_user_message("plain")])]
    )
    assert echoed.outputs[0].choices[0].message.content == "plain"


# -- cryptography --------------------------------------------------------------------------

TEN_MIB = os.urandom(10 << 20)


@pytest.mark.parametrize(("key", "algorithm"), [("rsa.pem", "RSA"), ("aes", "AES")])
def test_ten_mib_round_trip_over_http(api: httpx.Client, key: str, algorithm: str) -> None:
    r = api.put(
        "/v1.0-alpha1/crypto/vault/encrypt",
        content=TEN_MIB,
        headers={"dapr-key-name": key, "dapr-key-wrap-algorithm": algorithm},
    )
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/octet-stream"
    sealed = r.content
    assert sealed.startswith(b"dapr.io/enc/v1\n")
    r = api.put("/v1.0-alpha1/crypto/vault/decrypt", content=sealed)
    assert r.status_code == 200, r.text[:500]
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(TEN_MIB).digest()


def test_crypto_errors_over_http(api: httpx.Client) -> None:
    r = api.put(
        "/v1.0-alpha1/crypto/vault/encrypt",
        content=b"secret",
        headers={
            "dapr-key-name": "aes",
            "dapr-key-wrap-algorithm": "AES",
            "dapr-data-encryption-cipher": "chacha20-poly1305",
        },
    )
    assert r.status_code == 200
    wrong = api.put(
        "/v1.0-alpha1/crypto/vault/decrypt",
        content=r.content,
        headers={"dapr-key-name": "other-aes"},
    )
    assert (wrong.status_code, wrong.json()["errorCode"]) == (500, "ERR_CRYPTO")
    missing = api.put(
        "/v1.0-alpha1/crypto/vault/encrypt", content=b"x", headers={"dapr-key-name": "aes"}
    )
    assert (missing.status_code, missing.json()["errorCode"]) == (400, "ERR_BAD_REQUEST")
    nowhere = api.put(
        "/v1.0-alpha1/crypto/nope/encrypt",
        content=b"x",
        headers={"dapr-key-name": "aes", "dapr-key-wrap-algorithm": "AES"},
    )
    assert (nowhere.status_code, nowhere.json()["errorCode"]) == (
        400,
        "ERR_CRYPTO_PROVIDER_NOT_FOUND",
    )
    # and the sidecar keeps serving
    right = api.put("/v1.0-alpha1/crypto/vault/decrypt", content=r.content)
    assert right.content == b"secret"


def test_subtle_sign_and_verify_over_http(api: httpx.Client) -> None:
    digest = base64.b64encode(hashlib.sha256(b"doc").digest()).decode()
    r = api.post(
        "/v1.0-alpha1/subtlecrypto/vault/sign",
        json={"keyName": "rsa.pem", "algorithm": "PS256", "digest": digest},
    )
    assert r.status_code == 200, r.text
    body = {
        "keyName": "rsa.pem",
        "algorithm": "PS256",
        "digest": digest,
        "signature": r.json()["signature"],
    }
    r = api.post("/v1.0-alpha1/subtlecrypto/vault/verify", json=body)
    assert r.json() == {"valid": True}


def test_sdk_encrypt_and_decrypt_ten_mib(sdk: DaprClient, sidecars: dict[str, Sidecar]) -> None:
    sealed = sdk.encrypt(
        TEN_MIB,
        EncryptOptions(component_name="vault", key_name="rsa.pem", key_wrap_algorithm="RSA"),
    ).read()
    plain = sdk.decrypt(sealed, DecryptOptions(component_name="vault")).read()
    assert hashlib.sha256(plain).digest() == hashlib.sha256(TEN_MIB).digest()
    # What gRPC sealed, HTTP opens.
    r = httpx.put(
        f"{sidecars['ext_proc'].base}/v1.0-alpha1/crypto/vault/decrypt", content=sealed, timeout=60
    )
    assert r.status_code == 200 and len(r.content) == len(TEN_MIB)
    # The SDK hands a stream's failure over as gRPC's own error.
    with pytest.raises(grpc.RpcError) as err:
        sdk.decrypt(sealed, DecryptOptions(component_name="vault", key_name="aes")).read()
    assert err.value.code() == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert "failed to perform operation" in err.value.details()  # type: ignore[attr-defined]


def test_metadata_lists_the_components(api: httpx.Client) -> None:
    listed = {c["name"]: c["type"] for c in api.get("/v1.0/metadata").json()["components"]}
    assert listed["echo"] == "conversation.echo"
    assert listed["llm"] == "conversation.openai"
    assert listed["vault"] == "crypto.dapr.localstorage"
