"""Both front doors of the Dapr HTTP API through a real `tandem run`: ``--api-transport http``
(Envoy proxies HTTP/1.1 to the runtime) and ``--api-transport ext_proc`` answer the same
requests with the same statuses, headers and Dapr error bodies.

One sidecar per transport, each with DAPR_API_TOKEN set and a 1 MiB body limit; the
embedded defaults (sqlite state store ``statestore``, sqlite pub/sub ``pubsub``) serve.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import APPS, TRANSPORTS, Sidecar, run_sdk_app, sidecar_per_door

TOKEN = "transport-test-token"
MiB = 1 << 20


@pytest.fixture(scope="module")
def sidecars(tandem_home: Path) -> Iterator[dict[str, Sidecar]]:
    with sidecar_per_door(
        tandem_home,
        "door",
        # The same limit in both of dapr run's spellings (older CLIs: MB).
        per_door=lambda transport: (
            ("--dapr-http-max-request-size", "1")
            if transport == "http"
            else ("--max-body-size", "1Mi")
        ),
        env={"DAPR_API_TOKEN": TOKEN},
    ) as started:
        yield started


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sidecar(sidecars: dict[str, Sidecar], transport: str) -> Sidecar:
    return sidecars[transport]


@pytest.fixture
def api(sidecar: Sidecar) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sidecar.base, headers={"dapr-api-token": TOKEN}, timeout=30
    ) as client:
        yield client


def test_the_chosen_transport_is_the_one_serving(sidecar: Sidecar, transport: str) -> None:
    httpx.get(f"{sidecar.base}/v1.0/healthz", timeout=10)
    stats = sidecar.envoy_stats()

    proxied = stats.get("cluster.tandem_runtime_http.upstream_rq_total", 0)
    ext_proc_streams = stats.get("http.dapr_http.ext_proc.streams_started", 0)
    if transport == "http":
        assert proxied > 0
        assert ext_proc_streams == 0
    else:
        # The runtime's HTTP door exists on every sidecar (forwarded actor calls, a gRPC
        # app's translated invocations) but the app-facing API does not go through it.
        assert proxied == 0
        assert ext_proc_streams > 0


@pytest.mark.parametrize("path", ["/v1.0/healthz", "/v1.0/healthz/outbound"])
def test_health_answers_204_without_a_token(sidecar: Sidecar, path: str) -> None:
    reply = httpx.get(f"{sidecar.base}{path}", timeout=10)

    assert reply.status_code == 204
    assert reply.content == b""


def test_metadata_names_the_app(api: httpx.Client, sidecar: Sidecar) -> None:
    reply = api.get("/v1.0/metadata")

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["id"] == sidecar.app_id
    assert "statestore" in {c["name"] for c in body["components"]}


def test_state_save_get_and_etag_conflict(api: httpx.Client) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"

    saved = api.post("/v1.0/state/statestore", json=[{"key": key, "value": {"n": 1}}])
    got = api.get(f"/v1.0/state/statestore/{key}")
    stale = api.post(
        "/v1.0/state/statestore",
        json=[{"key": key, "value": {"n": 2}, "etag": "999999"}],
    )
    missing = api.get(f"/v1.0/state/statestore/{key}-absent")

    assert saved.status_code == 204
    assert got.status_code == 200
    assert got.json() == {"n": 1}
    assert got.headers["etag"]
    assert stale.status_code == 409
    assert stale.json()["errorCode"] == "ERR_STATE_SAVE"
    assert missing.status_code == 204
    assert missing.content == b""


def test_state_errors_keep_daprs_status_and_code(api: httpx.Client) -> None:
    unknown_store = api.get("/v1.0/state/nope/k")
    malformed = api.post(
        "/v1.0/state/statestore",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    no_route = api.get("/v1.0/nothing-here")

    assert unknown_store.status_code == 400
    assert unknown_store.json()["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
    assert malformed.status_code == 400
    assert malformed.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert no_route.status_code == 404


def test_chunked_state_save_arrives_whole(api: httpx.Client) -> None:
    key = f"chunked-{uuid.uuid4().hex[:8]}"
    body = f'[{{"key": "{key}", "value": "{"v" * 5000}"}}]'.encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    saved = api.post("/v1.0/state/statestore", content=chunks())

    assert saved.status_code == 204
    assert api.get(f"/v1.0/state/statestore/{key}").json() == "v" * 5000


def test_publish_is_accepted(api: httpx.Client) -> None:
    reply = api.post("/v1.0/publish/pubsub/transports", json={"hello": "world"})
    unknown = api.post("/v1.0/publish/nope/transports", json={})

    assert reply.status_code == 204
    assert unknown.status_code == 404
    assert unknown.json()["errorCode"] == "ERR_PUBSUB_NOT_FOUND"


def test_body_over_the_limit_is_413_in_daprs_json(api: httpx.Client) -> None:
    reply = api.post("/v1.0/state/statestore", content=b"x" * (MiB + 1))

    assert reply.status_code == 413
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "errorCode": "ERR_REQUEST_TOO_LARGE",
        "message": f"request body exceeds the limit of {MiB} bytes",
    }
    # The sidecar keeps serving.
    assert api.get("/v1.0/healthz").status_code == 204


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_missing_or_wrong_token_is_401(sidecar: Sidecar, token: str | None) -> None:
    headers = {"dapr-api-token": token} if token is not None else {}

    reply = httpx.get(f"{sidecar.base}/v1.0/metadata", headers=headers, timeout=10)

    assert reply.status_code == 401
    assert reply.text == "invalid api token"


def _raw_exchange(sidecar: Sidecar, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes that no HTTP client would; read Envoy's whole answer (it closes)."""
    import socket

    with socket.create_connection(("127.0.0.1", sidecar.http_port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\nNot a header\r\n\r\n", 400),
        (b"GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (
            b"POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
    ],
    ids=["malformed", "headers-too-large", "unknown-transfer-encoding"],
)
def test_envoys_own_answers_to_malformed_http_are_daprs_json(
    sidecar: Sidecar, request_bytes: bytes, status: int
) -> None:
    code, headers, body = _raw_exchange(sidecar, request_bytes)

    assert code == status
    assert headers["content-type"] == "application/json"
    error = httpx.Response(code, content=body).json()
    assert error["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert error["message"].startswith("malformed HTTP request: http1.")
    # The sidecar keeps serving.
    assert httpx.get(f"{sidecar.base}/v1.0/healthz", timeout=10).status_code == 204


# A Dapr gRPC method not built yet answers UNIMPLEMENTED naming its API
# (tandem.ext_proc.unimplemented); every HTTP API of Dapr 1.19 is served.
def test_unbuilt_grpc_api_is_unimplemented_naming_it(sidecars: dict[str, Sidecar]) -> None:
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, vector_pb2

    s = sidecars["http"]
    with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.QueryVectorsAlpha1(
                vector_pb2.QueryVectorsRequestAlpha1(),
                metadata=(("dapr-api-token", TOKEN),),
                timeout=10,
            )
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "the vector store API is not implemented" in info.value.details()


def test_sdk_lock_and_workflow_calls_answer_without_hanging(
    sidecars: dict[str, Sidecar],
) -> None:
    # The deadline is the test: before, the SDK's worker retried "Method not found!" forever.
    done = run_sdk_app(
        sidecars["http"],
        APPS / "sdk_unimplemented.py",
        env={"DAPR_API_TOKEN": TOKEN},
        timeout=90,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "try_lock success=True" in out, out
    assert "workflow runtime started" in out, out + done.stderr
    assert "schedule_new_workflow succeeded" in out, out  # workflows are served now
    assert out.rstrip().endswith("done"), out
