"""Real servers for the Envoy tests: a fake runtime (ext_proc), plain apps, sidecars.

Nothing here sleeps to synchronise: every wait polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from envoy.type.v3 import http_status_pb2

from tandem.envoy import EnvoyProcess, new_node_id, render_bootstrap
from tandem.xds.ca import spiffe_id
from tandem.xds.enrolment import WorkloadKey
from tandem.xds.identity import Identities

T = TypeVar("T")

LISTENERS = ("dapr_http", "dapr_grpc", "dapr_inbound")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Call ``probe`` until it returns something other than None, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while True:
        try:
            result = await probe()
            if result is not None:
                return result
        except (OSError, AssertionError) as exc:
            last = exc
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.02)


# --- the fake runtime -------------------------------------------------------------------


def _immediate(status: int, body: bytes = b"", content_type: str = "") -> ep.ProcessingResponse:
    headers = ep.HeaderMutation()
    if content_type:
        headers.set_headers.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="content-type", raw_value=content_type.encode())
            )
        )
    return ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),  # type: ignore[arg-type]
            headers=headers,
            body=body,
        )
    )


@dataclass
class FakeRuntime(ep_grpc.ExternalProcessorServicer):
    """Answers /v1.0/healthz with 204; any other call with 404 JSON. Records what it saw."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (app id, method, path)

    async def Process(  # noqa: N802
        self, request_iterator: AsyncIterator[ep.ProcessingRequest], context: Any
    ) -> AsyncIterator[ep.ProcessingResponse]:
        app_id = dict(context.invocation_metadata()).get("x-tandem-app-id", "")
        async for request in request_iterator:
            if request.WhichOneof("request") == "request_headers":
                headers = {
                    h.key: h.raw_value.decode() for h in request.request_headers.headers.headers
                }
                path = headers.get(":path", "")
                self.seen.append((app_id, headers.get(":method", ""), path))
                if path.split("?", 1)[0] == "/v1.0/healthz":
                    yield _immediate(204)
                    return
                if not request.request_headers.end_of_stream:
                    yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())
                    continue
            body = json.dumps({"errorCode": "ERR_NOT_FOUND", "message": "fake runtime"})
            yield _immediate(404, body.encode(), "application/json")
            return


async def start_fake_runtime(socket_path: str, runtime: FakeRuntime) -> grpc.aio.Server:
    server = grpc.aio.server()
    ep_grpc.add_ExternalProcessorServicer_to_server(runtime, server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()
    return server


# --- a plain HTTP app -------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class RecordingApp:
    """An HTTP/1.1 app in a thread: records each request, answers 201 with a custom header."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                app.requests.append(Seen(self.command, self.path, headers, body))
                reply = f"app saw {self.command} {self.path}".encode()
                self.send_response(201)
                self.send_header("content-type", "text/x-app")
                self.send_header("x-app-header", "from-app")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> RecordingApp:
        self._thread.start()
        return self

    def find(self, path_prefix: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    async def stop(self) -> None:
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()


# --- sidecars ---------------------------------------------------------------------------


@dataclass
class SidecarHandle:
    app_id: str
    node_id: str
    http_port: int
    grpc_port: int
    internal_port: int
    envoy: EnvoyProcess
    # The node metadata it announced (credential and CSR included): replay tests reuse it.
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def enrol(
    identities: Identities,
    node_id: str,
    app_id: str,
    workdir: Path,
    *,
    namespace: str = "default",
    trust_domain: str = "public",
) -> dict[str, Any]:
    """What `tandem run` does for its sidecar: a key file next to it, a CSR, a credential."""
    key = WorkloadKey.generate()
    key_path = workdir / f"{node_id}.key"
    key.write_key(key_path)
    spiffe = spiffe_id(trust_domain, namespace, app_id)
    return {
        "key_path": str(key_path),
        "csr": key.csr_pem,
        "credential": identities.enrolment.mint(node_id, spiffe, key.csr_pem),
        "trust_domain": trust_domain,
    }


async def start_sidecar(
    app_id: str,
    *,
    identities: Identities,
    ads_address: str,
    runtime_socket: str,
    workdir: Path,
    app_port: int | None = None,
    app_protocol: str = "http",
    max_body_bytes: int = 4 << 20,
    metrics_port: int | None = None,
    extra_metadata: dict[str, Any] | None = None,
    runtime_http_socket: str | None = None,
) -> SidecarHandle:
    """With ``runtime_http_socket`` the sidecar uses ``api_transport: http``, else ext_proc."""
    node_id = new_node_id(app_id)
    metadata: dict[str, Any] = {
        "app_id": app_id,
        "namespace": "default",
        "app_protocol": app_protocol,
        "http_port": free_port(),
        "grpc_port": free_port(),
        "internal_port": free_port(),
        "internal_address": "127.0.0.1",
        "max_body_bytes": max_body_bytes,
        "app_port": app_port,
        "metrics_port": metrics_port,
        **enrol(identities, node_id, app_id, workdir),
        **({"api_transport": "http"} if runtime_http_socket is not None else {}),
        **(extra_metadata or {}),
    }
    config = render_bootstrap(
        node_id=node_id,
        app_id=app_id,
        metadata=metadata,
        ads_address=ads_address,
        runtime_socket=runtime_socket,
        admin_socket=str(workdir / f"{app_id}.adm"),
        runtime_http_socket=runtime_http_socket,
    )
    envoy = EnvoyProcess(config, log_path=workdir / f"{app_id}.envoy.log")
    await envoy.start()
    listeners = (*LISTENERS, "dapr_metrics") if metrics_port is not None else LISTENERS
    try:
        await envoy.wait_ready(timeout=15.0, listeners=listeners)
    except BaseException:
        await envoy.stop()
        raise
    return SidecarHandle(
        app_id,
        node_id,
        metadata["http_port"],
        metadata["grpc_port"],
        metadata["internal_port"],
        envoy,
        metadata,
    )
