"""Service invocation across protocols: HTTP <-> ``AppCallback.OnInvoke`` and the gRPC
``Dapr/InvokeService`` <-> HTTP. Pure functions over protos and bytes; the I/O lives in
``tandem.ext_proc.invoke_grpc_app`` (callee side) and ``tandem.ext_proc.invoke_service``
(caller side).

The status tables follow Dapr's mapping (gRPC's HTTP <-> status mapping document, with
Dapr's choices where the two differ): an app's gRPC error reaches an HTTP caller as the
mapped HTTP status and the proto-JSON of its ``google.rpc.Status``; an HTTP app's non-2xx
reaches an ``InvokeService`` caller as a gRPC status named after the HTTP status, with a
``google.rpc.ErrorInfo`` holding the HTTP code and the start of the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote

import grpc
import orjson
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2
from google.protobuf import any_pb2, json_format
from google.rpc import status_pb2

from tandem.blocks.errors import DaprError, ErrorInfo

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
# Carries an Any's type URL across the HTTP hop between sidecars, so a packed proto message
# sent with InvokeService reaches a gRPC app (and its reply the caller) still packed.
ANY_TYPE_HEADER = "x-tandem-any-type-url"
# Marks an HTTP error answer whose body is a gRPC app's google.rpc.Status (proto-JSON), so
# an InvokeService caller gets the app's own status back rather than one mapped twice.
GRPC_STATUS_HEADER = "x-tandem-grpc-status"
# google.rpc.ErrorInfo metadata values stay short; Dapr keeps the first 63 characters.
_DETAIL_LIMIT = 63

_C = grpc.StatusCode
_HTTP_OF_GRPC: dict[grpc.StatusCode, int] = {
    _C.OK: 200,
    _C.CANCELLED: 408,
    _C.UNKNOWN: 500,
    _C.INVALID_ARGUMENT: 400,
    _C.DEADLINE_EXCEEDED: 504,
    _C.NOT_FOUND: 404,
    _C.ALREADY_EXISTS: 409,
    _C.PERMISSION_DENIED: 403,
    _C.UNAUTHENTICATED: 401,
    _C.RESOURCE_EXHAUSTED: 429,
    # Deliberately not 412: a failed precondition is the client's to fix.
    _C.FAILED_PRECONDITION: 400,
    _C.ABORTED: 409,
    _C.OUT_OF_RANGE: 400,
    _C.UNIMPLEMENTED: 501,
    _C.INTERNAL: 500,
    _C.UNAVAILABLE: 503,
    _C.DATA_LOSS: 500,
}
_GRPC_OF_HTTP: dict[int, grpc.StatusCode] = {
    408: _C.CANCELLED,
    500: _C.UNKNOWN,
    400: _C.INTERNAL,
    504: _C.DEADLINE_EXCEEDED,
    404: _C.NOT_FOUND,
    409: _C.ALREADY_EXISTS,
    403: _C.PERMISSION_DENIED,
    401: _C.UNAUTHENTICATED,
    429: _C.RESOURCE_EXHAUSTED,
    501: _C.UNIMPLEMENTED,
    503: _C.UNAVAILABLE,
}
_VERBS = frozenset(common_pb2.HTTPExtension.Verb.keys()) - {"NONE"}


def http_status_of(code: grpc.StatusCode) -> int:
    return _HTTP_OF_GRPC.get(code, 500)


def grpc_code_of(http_status: int) -> grpc.StatusCode:
    code = _GRPC_OF_HTTP.get(http_status)
    if code is not None:
        return code
    return _C.OK if 200 <= http_status < 300 else _C.UNKNOWN


def _verb(method: str) -> common_pb2.HTTPExtension.Verb.ValueType:
    name = method.upper()
    return common_pb2.HTTPExtension.Verb.Value(name if name in _VERBS else "NONE")


def on_invoke_request(
    method: str,
    *,
    http_verb: str,
    query: str,
    content_type: str,
    body: bytes,
    type_url: str = "",
) -> common_pb2.InvokeRequest:
    """The ``OnInvoke`` request for an HTTP invocation of ``method`` (the path after
    ``/method/``, without the leading slash)."""
    return common_pb2.InvokeRequest(
        method=method,
        data=any_pb2.Any(type_url=type_url, value=body),
        content_type=content_type,
        http_extension=common_pb2.HTTPExtension(verb=_verb(http_verb), querystring=query),
    )


@dataclass(frozen=True, slots=True)
class HttpReply:
    """An HTTP answer: status, content type ("" for none), body, extra headers."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


# Response metadata that describes the gRPC hop, not the app's answer.
_HOP_METADATA = frozenset(
    {"content-type", "content-length", "transfer-encoding", "connection", "date", "server"}
)


def headers_of_app_metadata(
    metadata: Sequence[tuple[str, str | bytes]],
) -> tuple[tuple[str, str], ...]:
    """The headers a gRPC app sent with its answer (its initial metadata), as HTTP headers:
    gRPC's own keys, binary values and hop headers left out."""
    return tuple(
        (key, value)
        for key, value in metadata
        if isinstance(value, str)
        and key not in _HOP_METADATA
        and not key.startswith((":", "grpc-"))
        and not key.endswith("-bin")
        and "\n" not in value
        and "\r" not in value
    )


def reply_of_invoke_response(
    resp: common_pb2.InvokeResponse, metadata: Sequence[tuple[str, str | bytes]] = ()
) -> HttpReply:
    """A gRPC app's ``OnInvoke`` answer as the HTTP caller sees it: 200 with the data's bytes
    and the app's response metadata as headers."""
    headers = headers_of_app_metadata(metadata)
    type_url = resp.data.type_url
    if type_url:
        # A packed message: its bytes are protobuf whatever the app said, as in Dapr.
        return HttpReply(
            200, PROTOBUF_CONTENT_TYPE, resp.data.value, (*headers, (ANY_TYPE_HEADER, type_url))
        )
    return HttpReply(200, resp.content_type, resp.data.value, headers)


def reply_of_grpc_error(code: grpc.StatusCode, message: str, status_bin: bytes | None) -> HttpReply:
    """A gRPC app's error as the HTTP caller sees it: the mapped status and the proto-JSON of
    ``google.rpc.Status`` (details kept when the app sent rich ones we can render)."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if status_bin:
        rich = status_pb2.Status()
        try:
            rich.ParseFromString(status_bin)
            if rich.code == status.code:
                json_format.MessageToDict(rich)  # every detail must be renderable
                status = rich
        except Exception:  # malformed or unknown details: the code and message still go
            pass
    body = orjson.dumps(json_format.MessageToDict(status))
    marker = ((GRPC_STATUS_HEADER, str(status.code)),)
    return HttpReply(http_status_of(code), "application/json", body, marker)


@dataclass(frozen=True, slots=True)
class HttpCall:
    """The HTTP request ``InvokeService`` makes through the local Envoy's invoke route."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def http_call_of_invoke_service(req: invoke_pb2.InvokeServiceRequest) -> HttpCall:
    """``InvokeServiceRequest`` -> the HTTP invocation ``/v1.0/invoke/{id}/method/{method}``.

    The verb is the HTTP extension's, POST when none (gRPC callers rarely set one); the
    content type is the message's, protobuf for a packed message.
    """
    msg = req.message
    app_id = req.id
    verb = common_pb2.HTTPExtension.Verb.Name(msg.http_extension.verb)
    headers: list[tuple[str, str]] = []
    content_type = msg.content_type
    if msg.data.type_url:
        headers.append((ANY_TYPE_HEADER, msg.data.type_url))
        content_type = content_type or PROTOBUF_CONTENT_TYPE
    if content_type:
        headers.append(("content-type", content_type))
    return HttpCall(
        method="POST" if verb == "NONE" else verb,
        path=f"/v1.0/invoke/{quote(app_id, safe='')}/method/{quote(msg.method.lstrip('/'), safe='/')}",
        query=msg.http_extension.querystring,
        headers=tuple(headers),
        body=msg.data.value,
    )


def invoke_response_of_http(
    content_type: str, body: bytes, type_url: str = ""
) -> common_pb2.InvokeResponse:
    """The ``InvokeService`` answer; a packed message comes back packed, as the gRPC app sent
    it (the SDK unpacks the Any when no protobuf content type says the bytes are raw)."""
    if type_url:
        content_type = ""
    return common_pb2.InvokeResponse(
        data=any_pb2.Any(type_url=type_url, value=body), content_type=content_type
    )


def _app_status(grpc_status: str, body: bytes) -> DaprError | None:
    codes = {c.value[0]: c for c in grpc.StatusCode}
    try:
        status = json_format.Parse(body, status_pb2.Status(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError):
        return None
    code = codes.get(status.code)
    if code is None or code is _C.OK or str(status.code) != grpc_status:
        return None
    return DaprError("ERR_DIRECT_INVOKE", status.message, grpc_status=code)


def error_of_http_status(
    http_status: int, body: bytes, grpc_status: str | None = None
) -> DaprError | None:
    """A non-2xx HTTP answer as the ``InvokeService`` caller's error (None for 2xx): the
    gRPC status named after the HTTP one, with the HTTP code and body start in ErrorInfo;
    or, when ``grpc_status`` says a gRPC app answered, that app's own code and message."""
    code = grpc_code_of(http_status)
    if code is _C.OK:
        return None
    if grpc_status is not None:
        app_error = _app_status(grpc_status, body)
        if app_error is not None:
            return app_error
    try:
        phrase = HTTPStatus(http_status).phrase
    except ValueError:
        phrase = f"HTTP {http_status}"
    info = ErrorInfo(
        reason=phrase,
        metadata={
            "http.code": str(http_status),
            "http.error_message": body.decode("utf-8", "replace")[:_DETAIL_LIMIT],
        },
    )
    return DaprError("ERR_DIRECT_INVOKE", phrase, grpc_status=code, info=info)
