"""Unary Dapr gRPC calls served by the HTTP/1.1 door, bridged there by Envoy.

grpc.aio costs ~0.5 ms of CPU per call before any handler runs (docs: BENCHMARKS.md,
"gRPC API path"); the HTTP/1.1 door costs a fraction of that. So Envoy's
``grpc_http1_reverse_bridge`` (``xds/translate/grpc_bridge.py``) sends each unary call of
the ``dapr.proto.runtime.v1.Dapr`` service to the door as ``POST /<service>/<Method>`` with
the gRPC-framed request as its body; streaming calls stay on grpc.aio.

The implementations are the gRPC servicer's own table (``DaprGrpcServicer.table``) and a
call runs through the same ``run_unary``/``status_of`` as on grpc.aio, so the two servers
cannot answer differently. The answer:

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
import logging
import struct
import time
from collections.abc import Mapping
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
from tandem.xds.translate.grpc_bridge import BRIDGE_HEADER  # only bridged calls carry it

log = logging.getLogger("tandem.grpc")

SERVICE = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
GRPC_PREFIX = f"/{SERVICE.full_name}/"
GRPC_TYPE = b"application/grpc"
FRAME_HEADER_BYTES = 5
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


class GrpcUnaryOverHttp:
    """Answers a bridged unary call (an :class:`ApiRequest` under :data:`GRPC_PREFIX`)."""

    def __init__(
        self,
        table: Mapping[str, Rpc],
        max_request_bytes: int | None = None,
        metrics: RuntimeMetrics = NO_METRICS,
    ) -> None:
        self._max = max_request_bytes
        self._metrics = metrics
        # name -> (implementation or None when unimplemented, request class, full method)
        self._methods: dict[str, tuple[UnaryRpc | None, Any, str]] = {}
        for method in SERVICE.methods:
            if method.client_streaming or method.server_streaming:
                continue  # never bridged: streams stay on grpc.aio
            impl = table.get(method.name)
            unary = None if impl is None or isinstance(impl, StreamRpc) else impl
            self._methods[method.name] = (
                unary,
                message_factory.GetMessageClass(method.input_type),
                f"{GRPC_PREFIX}{method.name}",
            )

    async def __call__(self, req: ApiRequest) -> ApiResponse:
        name = req.path[len(GRPC_PREFIX) :]
        entry = self._methods.get(name)
        if entry is None:
            return error_response(CallStatus(grpc.StatusCode.UNIMPLEMENTED, "Method not found!"))
        impl, request_type, full_name = entry
        start = time.perf_counter()
        outcome = await self._answer(req, name, impl, request_type, full_name)
        if isinstance(outcome, CallStatus):
            code = outcome.code.name
            resp = error_response(outcome)
        else:
            code = "OK"
            resp = ApiResponse(status=200, body=outcome, content_type=GRPC_TYPE)
        self._metrics.grpc(full_name, code, (time.perf_counter() - start) * 1000)
        return resp

    async def _answer(
        self, req: ApiRequest, name: str, impl: UnaryRpc | None, request_type: Any, full: str
    ) -> bytes | CallStatus:
        """The framed response message, or the status the call ends with."""
        payload = _unframe(req.body, req.headers.get("grpc-encoding", "identity"))
        if isinstance(payload, CallStatus):
            return payload
        if self._max is not None and len(payload) > self._max:
            return too_large(len(payload), self._max)
        try:
            request = request_type.FromString(payload)
        except DecodeError:
            return CallStatus(
                grpc.StatusCode.INVALID_ARGUMENT,
                undecodable_message(full, request_type.DESCRIPTOR.name),
            )
        if impl is None:
            return CallStatus(grpc.StatusCode.UNIMPLEMENTED, unimplemented.grpc_message_for(name))
        metadata = {k: v for k, v in req.headers.items() if k not in _NOT_METADATA}
        try:
            response = await run_unary(impl, request, metadata)
        except Exception as exc:
            return status_of(exc)
        body = response.SerializeToString()
        return _FRAME.pack(0, len(body)) + body


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
