"""Callee side of an HTTP invocation of a gRPC app: HTTP in, ``AppCallback.OnInvoke`` out.

The callee's Envoy sends every non-gRPC invocation of a ``--app-protocol grpc`` app to this
runtime's HTTP/1.1 door under ``ONINVOKE_PREFIX`` + method (``xds/translate/routes.py``);
the call goes to the app over the runtime's one app gRPC channel, and the answer (or the
app's gRPC error, mapped as Dapr maps it) goes back as HTTP. This is the only invocation
that enters the runtime; gRPC calls proxied with ``dapr-app-id`` stay in Envoy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import grpc

from tandem.blocks.app_grpc_channel import AppGrpcChannel
from tandem.blocks.errors import DaprError
from tandem.blocks.invoke_translate import (
    ANY_TYPE_HEADER,
    HttpReply,
    on_invoke_request,
    reply_of_grpc_error,
    reply_of_invoke_response,
)
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router
from tandem.xds.contract import ONINVOKE_PREFIX

_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
# Headers that describe the HTTP hop, not the call: never passed on as gRPC metadata.
_HOP = frozenset(
    {
        "content-type",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "host",
        "expect",
        "dapr-app-id",
        ANY_TYPE_HEADER,
    }
)
_STATUS_DETAILS = "grpc-status-details-bin"


def _call_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _HOP and not k.startswith("x-envoy-")}


def _response(reply: HttpReply) -> ApiResponse:
    return ApiResponse(
        status=reply.status,
        body=reply.body,
        content_type=reply.content_type.encode("latin-1"),
        headers=tuple((k, v.encode("latin-1")) for k, v in reply.headers),
    )


class OnInvokeHandler:
    """Serves ``ONINVOKE_PREFIX{method...}``; ``channel()`` is the app's gRPC channel once
    the app channel is open (None before, and for a sidecar without an app)."""

    def __init__(self, app_id: str, channel: Callable[[], AppGrpcChannel | None]) -> None:
        self._app_id = app_id
        self._channel = channel

    async def __call__(self, req: ApiRequest) -> ApiResponse:
        channel = self._channel()
        if channel is None:
            raise DaprError(
                "ERR_DIRECT_INVOKE",
                f"failed to invoke, id: {self._app_id}, err: app channel is not initialized",
            )
        headers = req.headers
        request = on_invoke_request(
            req.params["method"],
            http_verb=req.method,
            query=req.query,
            content_type=headers.get("content-type", ""),
            body=req.body,
            type_url=headers.get(ANY_TYPE_HEADER, ""),
        )
        try:
            resp, sent = await channel.on_invoke(request, _call_metadata(headers))
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code is grpc.StatusCode.UNAVAILABLE and (
                not channel.reachable() or _envoy_found_no_app(err.details() or "")
            ):
                raise DaprError(
                    "ERR_DIRECT_INVOKE",
                    f"failed to invoke, id: {self._app_id}, err: the app is not reachable "
                    f"on port {channel.port}: {err.details()}",
                ) from err
            details = next(
                (
                    v
                    for k, v in err.trailing_metadata() or ()
                    if k == _STATUS_DETAILS and isinstance(v, bytes)
                ),
                None,
            )
            return _response(reply_of_grpc_error(code, err.details() or "", details))
        return _response(reply_of_invoke_response(resp, sent))


def _envoy_found_no_app(details: str) -> bool:
    """Through Envoy's app channel listener the runtime's channel is always connected; an
    app that is down shows as Envoy's own local reply instead."""
    return details.startswith(("upstream connect error", "no healthy upstream"))


def register(router: Router, handler: OnInvokeHandler) -> None:
    router.add(_METHODS, ONINVOKE_PREFIX + "{method...}", handler)
