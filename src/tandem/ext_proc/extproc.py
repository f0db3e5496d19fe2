"""The ext_proc servicer: Envoy's per-request stream in, one ImmediateResponse out.

Only the headers/body state machine and wire translation live here. Envoy opens one stream
per HTTP request; a bodiless request is answered at the headers step so it costs a single
exchange, a request with a body gets CONTINUE and is answered after the buffered body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from envoy.type.v3 import http_status_pb2

from tandem.ext_proc.api import ApiRequest, ApiResponse

log = logging.getLogger("tandem.ext_proc")

Dispatch = Callable[[ApiRequest], Awaitable[ApiResponse]]

APP_ID_METADATA = "x-tandem-app-id"
_CONTINUE = ep.ProcessingResponse(request_headers=ep.HeadersResponse())


def _header(key: str, value: bytes) -> base_pb2.HeaderValueOption:
    # Envoy reads `raw_value`; setting `value` too makes it answer 500 (envoy#31555).
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, raw_value=value))


_JSON_CONTENT_TYPE = _header("content-type", b"application/json")


def to_immediate(resp: ApiResponse) -> ep.ProcessingResponse:
    headers = [_header(k, v) for k, v in resp.headers]
    if resp.body and resp.content_type:
        # Nearly every answer is JSON: reuse one immutable header message for it.
        headers.append(
            _JSON_CONTENT_TYPE
            if resp.content_type == b"application/json"
            else _header("content-type", resp.content_type)
        )
    return ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=resp.status),  # type: ignore[arg-type]
            headers=ep.HeaderMutation(set_headers=headers),
            body=resp.body,
            details="tandem",
        )
    )


def parse_headers(msg: ep.HttpHeaders, app_id: str) -> ApiRequest:
    """HTTP/2 pseudo-headers become method and path; the rest a lower-cased dict."""
    method = "GET"
    raw_path = "/"
    headers: dict[str, str] = {}
    for h in msg.headers.headers:
        key = h.key
        value = h.raw_value.decode("latin-1") if h.raw_value else h.value
        if key[0] == ":":
            if key == ":method":
                method = value
            elif key == ":path":
                raw_path = value
        else:
            headers[key] = value
    path, _, query = raw_path.partition("?")
    return ApiRequest(method=method, path=path, query=query, headers=headers, app_id=app_id)


def _trace_from_metadata(req: ApiRequest, context: grpc.aio.ServicerContext) -> None:
    """Envoy puts its span's context in the Process call's metadata, not in the HTTP headers
    it forwards (those hold only the client's own traceparent): that one is the parent."""
    trace = {
        key: value if isinstance(value, str) else value.decode("latin-1")
        for key, value in context.invocation_metadata() or ()
        if key in ("traceparent", "tracestate")
    }
    if trace:
        req.headers = {**req.headers, **trace}


class ExtProcServicer(ep_grpc.ExternalProcessorServicer):
    def __init__(self, dispatch: Dispatch, default_app_id: str) -> None:
        self._dispatch = dispatch
        self._default_app_id = default_app_id

    def _app_id(self, context: grpc.aio.ServicerContext) -> str:
        for key, value in context.invocation_metadata() or ():
            if key == APP_ID_METADATA:
                return value if isinstance(value, str) else value.decode()
        return self._default_app_id

    async def Process(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[ep.ProcessingRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ep.ProcessingResponse]:
        req: ApiRequest | None = None
        async for msg in request_iterator:
            kind = msg.WhichOneof("request")
            if kind == "request_headers":
                req = parse_headers(msg.request_headers, self._app_id(context))
                _trace_from_metadata(req, context)
                if msg.request_headers.end_of_stream:
                    yield to_immediate(await self._dispatch(req))
                    return  # Envoy resets the stream after an ImmediateResponse
                yield _CONTINUE
            elif kind == "request_body":
                if req is None:  # Envoy always sends headers first; guard anyway
                    return
                # BUFFERED mode delivers the whole body in one message.
                req.body = msg.request_body.body
                yield to_immediate(await self._dispatch(req))
                return
            elif kind == "request_trailers":
                if req is not None:
                    yield to_immediate(await self._dispatch(req))
                return
            else:
                log.warning("unexpected ext_proc message %s", kind)
                return
