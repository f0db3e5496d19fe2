"""Unary gRPC API calls served by the HTTP/1.1 door, bridged there by Envoy.

grpc.aio costs ~0.5 ms of CPU per call before any handler runs (docs: BENCHMARKS.md,
"gRPC API path"); the HTTP/1.1 door costs a fraction of that. So Envoy's
``grpc_http1_reverse_bridge`` (``xds/translate/grpc_bridge.py``) sends each unary call of
the ``dapr.proto.runtime.v1.Dapr`` service to the door as ``POST /<service>/<Method>`` with
the gRPC-framed request as its body (and so each unary call of the workflow SDK's
``TaskHubSidecarService``); streaming calls stay on grpc.aio.

The implementations are the gRPC servicers' own: the Dapr servicer's table
(``DaprGrpcServicer.table``), run through the same ``run_unary``/``status_of`` as on
grpc.aio, and the task hub servicer's methods, given a :class:`BridgedContext` whose
``abort`` ends the call as grpc.aio's would; so the two servers cannot answer differently.
The answer:

- success: HTTP 200, ``content-type: application/grpc``, the gRPC-framed response; the
  bridge appends the ``grpc-status: 0`` trailer;
- failure: a trailers-only answer (HTTP 200, empty body, ``grpc-status``, percent-encoded
  ``grpc-message`` and ``grpc-status-details-bin`` in the headers), which the bridge passes
  through untouched, so the SDK sees the same code, message and rich details as from
  grpc.aio (the bridge's own mapping of HTTP statuses is never used).
"""

from __future__ import annotations

import base64
import gzip
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
from dapr.proto.runtime.v1 import dapr_pb2
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from tandem.ext_proc import unimplemented
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.grpc_api import (
    CallStatus,
    Rpc,
    StreamRpc,
    UnaryRpc,
    run_unary,
    status_of,
    too_large,
)
from tandem.ext_proc.grpc_decode import undecodable_message
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.xds.contract import GRPC_BRIDGE_HEADER as BRIDGE_HEADER
from tandem.xds.contract import TASK_HUB_PATH, TASK_HUB_SERVICE

SERVICE = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
GRPC_PREFIX = f"/{SERVICE.full_name}/"
GRPC_TYPE = b"application/grpc"
FRAME_HEADER_BYTES = 5
# grpc.aio's receive limit is the body limit plus this (runtime.py); the door allows a
# bridged call as much, and the Dapr methods check the body limit themselves.
RECEIVE_SLACK_BYTES = 1 << 20
# Transport headers grpc.aio never shows a handler as invocation metadata.
_NOT_METADATA = frozenset(
    {
        "content-type",
        "content-length",
        "transfer-encoding",
        "te",
        "host",
        "accept",
        "connection",
        "keep-alive",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
        BRIDGE_HEADER,
    }
)
# grpc-message is percent-encoded: everything outside printable ASCII, and '%' itself.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != ord("%"))
_FRAME = struct.Struct(">BI")


def is_grpc(content_type: str) -> bool:
    return content_type.startswith("application/grpc")


def error_response(status: CallStatus) -> ApiResponse:
    """A trailers-only gRPC answer: the status travels in the headers of an empty 200."""
    headers: list[tuple[str, bytes]] = [
        ("content-type", GRPC_TYPE),
        ("grpc-status", b"%d" % status.code.value[0]),
        ("grpc-message", quote(status.details, safe=_MESSAGE_SAFE).encode("ascii")),
    ]
    for key, value in status.trailing_metadata:
        if key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            headers.append((key, base64.b64encode(raw).rstrip(b"=")))
        else:
            headers.append((key, value if isinstance(value, bytes) else value.encode("latin-1")))
    return ApiResponse(status=200, body=b"", content_type=GRPC_TYPE, headers=tuple(headers))


def request_too_large(size: int | None, limit: int) -> ApiResponse:
    """The answer to a gRPC body over the door's limit (``size`` unknown when chunked)."""
    if size is None:
        return error_response(
            CallStatus(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"grpc: received message larger than max ({limit})",
            )
        )
    return error_response(too_large(size, limit))


class _Aborted(grpc.aio.AbortError):  # type: ignore[misc]
    """``context.abort`` on a bridged call: ends it with ``status``."""

    def __init__(self, status: CallStatus) -> None:
        super().__init__(status.details)
        self.status = status


class BridgedContext:
    """The part of ``grpc.aio.ServicerContext`` the runtime's servicers use, for a call that
    arrived over the bridge: ``abort``, ``time_remaining`` (from ``grpc-timeout``) and
    ``invocation_metadata``."""

    __slots__ = ("metadata", "_deadline")

    def __init__(self, metadata: dict[str, str], timeout: str | None) -> None:
        self.metadata = metadata
        seconds = _timeout_seconds(timeout) if timeout else None
        self._deadline = None if seconds is None else time.monotonic() + seconds

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        raise _Aborted(CallStatus(code, details, tuple(trailing_metadata)))

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.metadata.items())


# A bridged method: the servicer's own implementation, called with a BridgedContext.
Handler = Callable[[Any, BridgedContext], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Method:
    handler: Handler | None  # None: not implemented (UNIMPLEMENTED naming the API)
    request_type: Any
    name: str
    dapr: bool  # a Dapr service method: counted in the gRPC metrics, as on grpc.aio


def _dapr_handler(impl: UnaryRpc) -> Handler:
    async def handle(request: Any, context: BridgedContext) -> Any:
        return await run_unary(impl, request, context.metadata)

    return handle


class GrpcUnaryOverHttp:
    """Answers a unary call Envoy bridged to the HTTP door (an :class:`ApiRequest` whose path
    is the gRPC method's): of the Dapr service from the servicer's ``table``, and of the
    durable-task ``TaskHubSidecarService`` from its servicer (``task_hub``)."""

    def __init__(
        self,
        table: Mapping[str, Rpc],
        max_request_bytes: int | None = None,
        metrics: RuntimeMetrics = NO_METRICS,
        task_hub: Callable[[], object] | None = None,
    ) -> None:
        self._max = max_request_bytes
        self._metrics = metrics
        self._methods: dict[str, _Method] = {}
        for method in SERVICE.methods:
            if method.client_streaming or method.server_streaming:
                continue  # never bridged: streams stay on grpc.aio
            impl = table.get(method.name)
            self._methods[f"{GRPC_PREFIX}{method.name}"] = _Method(
                None if impl is None or isinstance(impl, StreamRpc) else _dapr_handler(impl),
                message_factory.GetMessageClass(method.input_type),
                method.name,
                dapr=True,
            )
        # The task hub's servicer, loaded on its first call (it loads the workflow SDK).
        self._task_hub = task_hub

    def _add_task_hub(self, task_hub: object) -> None:
        from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2

        service = orchestrator_service_pb2.DESCRIPTOR.services_by_name[TASK_HUB_SERVICE]
        for method in service.methods:
            if method.client_streaming or method.server_streaming:
                continue
            self._methods[f"/{service.full_name}/{method.name}"] = _Method(
                getattr(task_hub, method.name),
                message_factory.GetMessageClass(method.input_type),
                method.name,
                dapr=False,
            )

    async def __call__(self, req: ApiRequest) -> ApiResponse:
        method = self._methods.get(req.path)
        if method is None and self._task_hub is not None and req.path.startswith(TASK_HUB_PATH):
            self._add_task_hub(self._task_hub())
            self._task_hub = None
            method = self._methods.get(req.path)
        if method is None:
            return error_response(CallStatus(grpc.StatusCode.UNIMPLEMENTED, "Method not found!"))
        start = time.perf_counter()
        outcome = await self._answer(req, method)
        if isinstance(outcome, CallStatus):
            code = outcome.code.name
            resp = error_response(outcome)
        else:
            code = "OK"
            resp = ApiResponse(status=200, body=outcome, content_type=GRPC_TYPE)
        if method.dapr:
            self._metrics.grpc(req.path, code, (time.perf_counter() - start) * 1000)
        return resp

    async def _answer(self, req: ApiRequest, method: _Method) -> bytes | CallStatus:
        """The framed response message, or the status the call ends with."""
        headers = req.headers
        payload = _unframe(req.body, headers.get("grpc-encoding", "identity"))
        if isinstance(payload, CallStatus):
            return payload
        if method.dapr and self._max is not None and len(payload) > self._max:
            return too_large(len(payload), self._max)
        try:
            request = method.request_type.FromString(payload)
        except DecodeError:
            return CallStatus(
                grpc.StatusCode.INVALID_ARGUMENT,
                undecodable_message(req.path, method.request_type.DESCRIPTOR.name),
            )
        if method.handler is None:
            return CallStatus(
                grpc.StatusCode.UNIMPLEMENTED, unimplemented.grpc_message_for(method.name)
            )
        context = BridgedContext(
            {k: v for k, v in headers.items() if k not in _NOT_METADATA},
            headers.get("grpc-timeout"),
        )
        try:
            response = await method.handler(request, context)
        except _Aborted as aborted:
            return aborted.status
        except Exception as exc:
            return status_of(exc)
        body = response.SerializeToString()
        return _FRAME.pack(0, len(body)) + body


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _timeout_seconds(value: str) -> float | None:
    """``grpc-timeout`` (digits and a unit letter) in seconds; None if malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


def _unframe(body: bytes, encoding: str) -> bytes | CallStatus:
    """The one message of a unary call's gRPC-framed body."""
    if len(body) < FRAME_HEADER_BYTES:
        return CallStatus(grpc.StatusCode.INTERNAL, "grpc: the request carries no message")
    compressed, length = _FRAME.unpack_from(body)
    payload = body[FRAME_HEADER_BYTES:]
    if length != len(payload):
        return CallStatus(
            grpc.StatusCode.INTERNAL,
            f"grpc: the request's message is {len(payload)} bytes, its frame says {length}",
        )
    if not compressed:
        return payload
    if encoding != "gzip":
        return CallStatus(
            grpc.StatusCode.UNIMPLEMENTED,
            f"grpc: Decompressor is not installed for grpc-encoding {encoding!r}",
        )
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError) as exc:
        return CallStatus(grpc.StatusCode.INTERNAL, f"grpc: bad gzip message: {exc}")
