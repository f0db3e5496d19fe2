"""`tandem run`'s app-facing flags end to end, as `dapr run` takes them.

Sidecar ``guarded``: an HTTP app with app health checks, ``--app-max-concurrency 2``,
``--unix-domain-socket`` and API logging from its Configuration (obfuscated URLs, no
health checks). Sidecar ``secure``: an HTTPS app (self-signed certificate made here) with
``--app-protocol https`` and ``--enable-api-logging``. Sidecar ``securegrpc``: a gRPC app
over TLS (``--app-protocol grpcs``) probed with ``AppCallbackHealthCheck.HealthCheck``.
"""

from __future__ import annotations

import datetime
import stat
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dapr.proto.runtime.v1 import dapr_pb2_grpc
from google.protobuf import empty_pb2
from harness import APPS, json_lines, start_sidecar, wait_until

from tandem.cli.ports import free_port

THRESHOLD = 2
MAX_CONCURRENCY = 2
TOPIC = "app-side-orders"
SECURE_TOPIC = "app-side-secure"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "app.crt", directory / "app.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def socket_dir():
    with tempfile.TemporaryDirectory(prefix="uds", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def logging_config(tandem_home):
    config = tandem_home / "api-logging.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: logging}\n"
        "spec:\n  logging:\n    apiLogging: {enabled: true, obfuscateURLs: true, "
        "omitHealthChecks: true}\n"
    )
    return config


@pytest.fixture(scope="module")
def guarded(tandem_home, socket_dir, logging_config):
    config = logging_config
    port = free_port()
    sidecar = start_sidecar(
        tandem_home,
        "guarded",
        "--app-port",
        str(port),
        "--config",
        str(config),
        "--enable-app-health-check",
        "--app-health-probe-interval",
        "0.2",
        "--app-health-probe-timeout",
        "300",
        "--app-health-threshold",
        str(THRESHOLD),
        "--app-max-concurrency",
        str(MAX_CONCURRENCY),
        "--unix-domain-socket",
        str(socket_dir),
        command=[sys.executable, str(APPS / "app_side_app.py"), str(port), TOPIC],
    )
    sidecar.app_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield sidecar
    sidecar.stop()


@pytest.fixture(scope="module")
def secure(tandem_home):
    cert, key = _self_signed(tandem_home)
    port = free_port()
    sidecar = start_sidecar(
        tandem_home,
        "secure",
        "--app-port",
        str(port),
        "--app-protocol",
        "https",
        "--enable-api-logging",
        command=[
            sys.executable,
            str(APPS / "app_side_app.py"),
            str(port),
            SECURE_TOPIC,
            str(cert),
            str(key),
        ],
    )
    yield sidecar
    sidecar.stop()


def _stats(base: str, **client: object) -> dict:
    return httpx.get(f"{base}/stats", timeout=5, **client).json()  # type: ignore[arg-type]


def _publish(sidecar, topic: str, data: dict) -> None:
    resp = httpx.post(f"{sidecar.base}/v1.0/publish/pubsub/{topic}", json=data, timeout=10)
    assert resp.status_code == 204, resp.text


def _api_log(tandem_home: Path, app_id: str) -> list[dict]:
    return json_lines(tandem_home / "logs" / f"{app_id}.api.log")


def test_unhealthy_app_gets_no_messages_or_calls_until_it_is_healthy_again(guarded):
    app = guarded.app_url
    wait_until(lambda: _stats(app)["probes"] >= 1, 30, "the first health probe")
    ids = [f"held-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]

    httpx.post(f"{app}/control/unhealthy", timeout=5)
    # The runtime counts THRESHOLD failed probes; one more proves it has read the last one.
    wait_until(lambda: _stats(app)["probes"] > THRESHOLD, 30, "failing health probes")
    for event_id in ids:
        _publish(guarded, TOPIC, {"id": event_id})
    # While unhealthy the app keeps being probed but gets none of the messages.
    wait_until(lambda: _stats(app)["probes"] > THRESHOLD + 5, 30, "more failing probes")
    assert not set(ids) & set(_stats(app)["received"])
    # Service invocation stops at the sidecar too, with Dapr's answer.
    invoke = f"{guarded.base}/v1.0/invoke/guarded/method/work"
    refused = httpx.post(invoke, timeout=10)
    assert refused.status_code == 500
    assert refused.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: guarded, err: app is not in a healthy state",
    }

    httpx.post(f"{app}/control/healthy", timeout=5)
    received = wait_until(
        lambda: (got := _stats(app)["received"]) and set(ids) <= set(got) and got,
        30,
        "the held messages after recovery",
    )
    assert sorted(r for r in received if r in ids) == sorted(ids)  # each once, none lost
    wait_until(lambda: httpx.post(invoke, timeout=10).status_code == 200, 30, "invocations")


def test_app_never_sees_more_requests_at_once_than_max_concurrency(guarded):
    app = guarded.app_url
    ids = [f"busy-{uuid.uuid4().hex[:8]}-{i}" for i in range(4)]
    invoke = f"{guarded.base}/v1.0/invoke/guarded/method/work?delay=0.3"

    def call(_: int) -> int:
        return httpx.post(invoke, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = pool.map(call, range(8))
        for event_id in ids:
            _publish(guarded, TOPIC, {"id": event_id, "delay": 0.3})
        assert list(statuses) == [200] * 8  # over the limit they wait, they do not fail

    wait_until(lambda: set(ids) <= set(_stats(app)["received"]), 30, "the slow messages")
    assert _stats(app)["max_in_flight"] == MAX_CONCURRENCY


def test_metadata_reports_the_app_connection_settings(guarded):
    app = httpx.get(f"{guarded.base}/v1.0/metadata", timeout=5).json()["appConnectionProperties"]

    assert app["maxConcurrency"] == MAX_CONCURRENCY
    assert app["health"] == {
        "healthCheckPath": "/healthz",
        "healthProbeInterval": "200ms",
        "healthProbeTimeout": "300ms",
        "healthThreshold": THRESHOLD,
    }


def test_dapr_apis_answer_on_unix_sockets_named_as_dapr_names_them(guarded, socket_dir):
    http_socket = socket_dir / "dapr-guarded-http.socket"
    grpc_socket = socket_dir / "dapr-guarded-grpc.socket"

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(http_socket))) as client:
        resp = client.get("http://localhost/v1.0/metadata", timeout=5)
    assert resp.status_code == 200 and resp.json()["id"] == "guarded"
    with grpc.insecure_channel(f"unix:{grpc_socket}") as channel:
        md = dapr_pb2_grpc.DaprStub(channel).GetMetadata(empty_pb2.Empty(), timeout=10)
    assert md.id == "guarded"


@pytest.fixture(scope="module")
def logged_ext_proc(tandem_home, logging_config):
    sidecar = start_sidecar(
        tandem_home, "logged", "--api-transport", "ext_proc", "--config", str(logging_config)
    )
    yield sidecar
    sidecar.stop()


@pytest.mark.parametrize("door", ["http", "ext_proc"])
def test_api_log_has_one_obfuscated_line_per_call_and_no_health_checks(door, request, tandem_home):
    sidecar = request.getfixturevalue("guarded" if door == "http" else "logged_ext_proc")
    key = f"secret-{uuid.uuid4().hex}"
    httpx.get(f"{sidecar.base}/v1.0/healthz", timeout=5)
    saved = httpx.post(
        f"{sidecar.base}/v1.0/state/statestore", json=[{"key": key, "value": 1}], timeout=10
    )
    got = httpx.get(f"{sidecar.base}/v1.0/state/statestore/{key}", timeout=10)
    assert (saved.status_code, got.status_code) == (204, 200)
    with grpc.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        dapr_pb2_grpc.DaprStub(channel).GetMetadata(empty_pb2.Empty(), timeout=10)

    lines = wait_until(
        lambda: (
            (ls := _api_log(tandem_home, sidecar.app_id))
            and any(line["msg"] == "gRPC API Called" for line in ls)
            and any(line["method"] == "GET /v1.0/state/{storeName}/{key}" for line in ls)
            and ls
        ),
        20,
        "the API log lines",
    )
    path = tandem_home / "logs" / f"{sidecar.app_id}.api.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key not in path.read_text()
    assert not [line for line in lines if "healthz" in line["method"]]
    state = [line for line in lines if "/state/" in line["method"]]
    assert [(line["method"], line["code"]) for line in state] == [
        ("POST /v1.0/state/{storeName}", 204),
        ("GET /v1.0/state/{storeName}/{key}", 200),
    ]
    grpc_line = next(line for line in lines if line["msg"] == "gRPC API Called")
    assert grpc_line["method"] == "/dapr.proto.runtime.v1.Dapr/GetMetadata"
    assert grpc_line["app_id"] == sidecar.app_id and grpc_line["code"] == 0


def test_https_app_is_invoked_and_receives_messages_over_tls(secure, tandem_home):
    resp = httpx.post(f"{secure.base}/v1.0/invoke/secure/method/work", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"ok": True, "tls": True}

    event_id = f"tls-{uuid.uuid4().hex[:8]}"
    _publish(secure, SECURE_TOPIC, {"id": event_id})
    app = f"https://127.0.0.1:{secure.record()['app_port']}"
    wait_until(lambda: event_id in _stats(app, verify=False)["received"], 30, "delivery over TLS")
    # Plain API logging (the flag alone): the real path, health checks included.
    lines = wait_until(
        lambda: [
            line
            for line in _api_log(tandem_home, "secure")
            if line["method"] == "POST /v1.0/invoke/secure/method/work"
        ],
        20,
        "the invocation's API log line",
    )
    assert lines[0]["code"] == 200


@pytest.fixture(scope="module")
def secure_grpc(tandem_home):
    state = tandem_home / "grpc-app"
    state.mkdir()
    cert, key = _self_signed(state)
    port = free_port()
    sidecar = start_sidecar(
        tandem_home,
        "securegrpc",
        "--app-port",
        str(port),
        "--app-protocol",
        "grpcs",
        "--enable-app-health-check",
        "--app-health-probe-interval",
        "0.2",
        "--app-health-threshold",
        str(THRESHOLD),
        command=[
            sys.executable,
            str(APPS / "grpc_health_app.py"),
            str(port),
            GRPC_TOPIC,
            str(state),
            str(cert),
            str(key),
        ],
    )
    sidecar.state = state  # type: ignore[attr-defined]
    yield sidecar
    sidecar.stop()


GRPC_TOPIC = "app-side-grpcs"


def _grpc_app(state: Path) -> tuple[int, list[str]]:
    probes = state / "probes"
    received = state / "received"
    count = int(probes.read_text() or 0) if probes.exists() else 0
    ids = received.read_text().split() if received.exists() else []
    return count, ids


def test_grpcs_app_gets_messages_over_tls_and_is_probed_with_dapr_health_check(secure_grpc):
    state = secure_grpc.state
    first = f"grpcs-{uuid.uuid4().hex[:8]}"
    _publish(secure_grpc, GRPC_TOPIC, {"id": first})
    wait_until(lambda: first in _grpc_app(state)[1], 30, "delivery to the grpcs app")

    (state / "unhealthy").touch()
    flipped = _grpc_app(state)[0]
    wait_until(lambda: _grpc_app(state)[0] > flipped + THRESHOLD, 30, "failing HealthCheck calls")
    held = f"grpcs-held-{uuid.uuid4().hex[:8]}"
    _publish(secure_grpc, GRPC_TOPIC, {"id": held})
    wait_until(lambda: _grpc_app(state)[0] > flipped + THRESHOLD + 5, 30, "more probes")
    assert held not in _grpc_app(state)[1]

    (state / "unhealthy").unlink()
    wait_until(lambda: held in _grpc_app(state)[1], 30, "the held message after recovery")
