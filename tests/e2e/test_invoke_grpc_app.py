"""Issue 9, bug 1, end to end: invoking a gRPC app through the invoke API, and the gRPC
``Dapr/InvokeService`` the SDK uses, with real sidecars under `tandem run`.

- An HTTP call to a ``--app-protocol grpc`` app (the SDK's ``dapr.ext.grpc.App``) reaches
  its ``OnInvoke`` and answers with the app's reply, whichever API transport the callee's
  sidecar uses (its runtime's HTTP/1.1 door does the translation either way).
- The app's gRPC errors arrive as Dapr maps them: HTTP status from the gRPC code, body the
  proto-JSON of google.rpc.Status; an app that is not there gets Dapr's JSON error.
- ``DaprClient().invoke_method`` over gRPC (``DAPR_API_METHOD_INVOCATION_PROTOCOL=grpc``)
  reaches both an HTTP app and a gRPC app; non-2xx answers become gRPC errors.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from google.protobuf import wrappers_pb2
from harness import start_app_sidecar, start_sidecar, wait_until

from tandem.cli.ports import free_port

TOKEN = "caller-token"
CURL_FORM = "application/x-www-form-urlencoded"  # what `curl -d` sends
COMPAT_APPS = Path(__file__).resolve().parent.parent / "compat" / "apps"


def _grpc_receiver(home: Path, app_id: str, transport: str):
    return start_app_sidecar(
        home,
        app_id,
        COMPAT_APPS / "invoke_grpc_receiver.py",
        "--app-protocol",
        "grpc",
        "--api-transport",
        transport,
    )


@pytest.fixture(scope="module")
def mesh(tandem_home):
    started = []
    try:
        for app_id, transport in (("g-http", "http"), ("g-ext", "ext_proc")):
            started.append(_grpc_receiver(tandem_home, app_id, transport))
        started.append(start_app_sidecar(tandem_home, "h", COMPAT_APPS / "invoke_http_receiver.py"))
        # A gRPC app that never starts: its sidecar has an app port with nothing behind it.
        started.append(
            start_sidecar(
                tandem_home,
                "g-down",
                "--app-port",
                str(free_port()),
                "--app-protocol",
                "grpc",
                wait=False,
            )
        )
        # The caller's API is token-guarded: InvokeService must pass its own Envoy's check.
        caller = start_sidecar(tandem_home, "caller", env={"DAPR_API_TOKEN": TOKEN})
        started.append(caller)
        for target in ("g-http", "g-ext", "h"):
            wait_until(
                lambda t=target: _invoke(caller, t, "my-method").status_code == 200,
                60,
                f"caller's Envoy to reach {target}",
            )
        yield caller
    finally:
        for s in started:
            s.stop()


def _invoke(
    caller, app_id: str, method: str, body: bytes = b'{"id":1}', headers=None
) -> httpx.Response:
    return httpx.post(
        f"{caller.base}/v1.0/invoke/{app_id}/method/{method}",
        content=body,
        headers={"dapr-api-token": TOKEN, **(headers or {})},
        timeout=10,
    )


@pytest.mark.parametrize("receiver", ["g-http", "g-ext"])
def test_http_invoke_of_grpc_app_answers_the_apps_reply(mesh, receiver):
    r = _invoke(mesh, receiver, "my-method", headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-receiver"] == "grpc"  # the app's response metadata, as headers
    seen = r.json()
    assert seen["reply"] == "INVOKE_RECEIVED"
    assert seen["data"] == '{"id":1}'
    assert seen["content_type"] == "application/json"
    assert seen["caller"] == ["caller"]


def test_curl_style_call_without_content_type(mesh):
    # `curl -X POST .../method/my-method -d '{"id":1}'`, as the issue reports it.
    r = _invoke(mesh, "g-http", "my-method", headers={"content-type": CURL_FORM})
    assert r.status_code == 200
    assert r.json()["reply"] == "INVOKE_RECEIVED"
    assert r.json()["content_type"] == CURL_FORM


@pytest.mark.parametrize("receiver", ["g-http", "g-ext"])
def test_dapr_app_id_header_form_reaches_grpc_app(mesh, receiver):
    r = httpx.post(
        f"{mesh.base}/my-method",
        content=b"hello",
        headers={
            "dapr-app-id": receiver,
            "dapr-api-token": TOKEN,
            "content-type": "text/plain",
            "x-custom": "kept",
        },
        timeout=10,
    )
    assert r.status_code == 200
    seen = r.json()
    assert (seen["data"], seen["content_type"], seen["custom"]) == ("hello", "text/plain", ["kept"])


def test_app_exception_maps_to_500_with_grpc_status_json(mesh):
    r = _invoke(mesh, "g-http", "fail", b"boom")
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == grpc.StatusCode.UNKNOWN.value[0]
    assert "failing as asked: boom" in body["message"]


def test_unknown_method_maps_to_501(mesh):
    r = _invoke(mesh, "g-ext", "no-such-method")
    assert r.status_code == 501
    assert r.json()["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]


def test_grpc_app_down_gets_dapr_json_error_and_sidecar_keeps_serving(mesh):
    def answered() -> httpx.Response | None:
        r = _invoke(mesh, "g-down", "my-method")
        # Until the caller's Envoy knows g-down, the answer is "couldn't find service".
        return r if "couldn't find service" not in r.text else None

    r = wait_until(answered, 60, "caller's Envoy to learn about g-down")
    assert r.status_code == 500
    body = r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "g-down" in body["message"]
    assert _invoke(mesh, "g-http", "my-method").status_code == 200


@pytest.fixture
def sdk_env(mesh, monkeypatch):
    """The caller app's environment, as `tandem run` gives it (the SDK reads it per call)."""
    monkeypatch.setenv("DAPR_HTTP_PORT", str(mesh.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(mesh.grpc_port))
    monkeypatch.setenv("DAPR_API_TOKEN", TOKEN)


@pytest.fixture
def grpc_invocation(sdk_env, monkeypatch):
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK warns: use proxying
        yield


def _client(caller) -> DaprClient:
    return DaprClient()


def test_sdk_invoke_method_over_grpc_reaches_grpc_app(mesh, grpc_invocation):
    with _client(mesh) as d:
        resp = d.invoke_method(
            "g-ext", "my-method", data='{"id":3}', content_type="application/json"
        )
        packed = d.invoke_method("g-http", "packed", data=wrappers_pb2.StringValue(value="hey"))
    assert resp.content_type == "application/json"
    assert resp.json()["reply"] == "INVOKE_RECEIVED"
    assert resp.json()["data"] == '{"id":3}'
    value = wrappers_pb2.StringValue()
    packed.unpack(value)  # a packed message travels packed both ways
    assert value.value == "packed:hey"


def test_sdk_invoke_method_over_grpc_reaches_http_app(mesh, grpc_invocation):
    with _client(mesh) as d:
        resp = d.invoke_method(
            "h",
            "orders/7",
            data='{"id":4}',
            content_type="application/json",
            http_verb="PUT",
            http_querystring=(("a", "1"),),
        )
    seen = resp.json()
    assert resp.content_type == "application/json"
    assert (seen["method"], seen["path"], seen["query"]) == ("PUT", "/orders/7", "a=1")
    assert (seen["body"], seen["content_type"], seen["caller"]) == (
        '{"id":4}',
        "application/json",
        "caller",
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, grpc.StatusCode.NOT_FOUND),
        (500, grpc.StatusCode.UNKNOWN),
        (400, grpc.StatusCode.INTERNAL),
    ],
)
def test_sdk_invoke_method_over_grpc_maps_http_errors(mesh, grpc_invocation, status, code):
    with _client(mesh) as d, pytest.raises(grpc.RpcError) as info:
        d.invoke_method("h", f"status/{status}", data="x")
    assert info.value.code() == code


def test_sdk_invoke_method_over_grpc_keeps_grpc_apps_own_status(mesh, grpc_invocation):
    with _client(mesh) as d, pytest.raises(grpc.RpcError) as info:
        d.invoke_method("g-http", "no-such-method", data="x")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "no-such-method method not implemented" in info.value.details()


def test_sdk_invoke_method_over_http_reaches_grpc_app(mesh, sdk_env):
    # The SDK's default (HTTP) invoke_method, as Dapr's invoke-caller example runs it.
    with _client(mesh) as d:
        resp = d.invoke_method("g-http", "my-method", data='{"id":5}', http_verb="POST")
    assert resp.status_code == 200
    assert resp.json()["reply"] == "INVOKE_RECEIVED"
