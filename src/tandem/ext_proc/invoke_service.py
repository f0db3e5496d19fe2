"""Caller side of the gRPC ``Dapr/InvokeService``: the call becomes an HTTP invocation sent
through this sidecar's own Envoy (``/v1.0/invoke/{id}/method/{method}`` on its Dapr HTTP
port), so mTLS, access control, retries and timeouts stay Envoy's, exactly as for an HTTP
caller. A gRPC callee's sidecar turns it into ``OnInvoke`` (``invoke_grpc_app.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import invoke_pb2

from tandem.blocks.errors import DaprError
from tandem.blocks.invoke_translate import (
    ANY_TYPE_HEADER,
    GRPC_STATUS_HEADER,
    error_of_http_status,
    http_call_of_invoke_service,
    invoke_response_of_http,
)
from tandem.ext_proc.grpc_api import invocation_metadata

if TYPE_CHECKING:
    import aiohttp

API_TOKEN_ENV = "DAPR_API_TOKEN"
# gRPC call metadata that describes the gRPC hop (or our own plumbing), not the call.
_DROP = frozenset(
    {
        "content-type",
        "content-length",
        "user-agent",
        "te",
        "host",
        "dapr-api-token",
        "dapr-app-id",
        "x-request-id",
        "x-forwarded-proto",
        ANY_TYPE_HEADER,
    }
)


def _forwarded(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {
        k: v
        for k, v in (metadata or {}).items()
        if k not in _DROP
        and not k.startswith((":", "grpc-", "x-envoy-", "x-tandem-"))
        and not k.endswith("-bin")
    }


class InvokeService:
    """The ``InvokeService`` RPC; ``http_port`` is this sidecar's Dapr HTTP port (Envoy)."""

    def __init__(self, http_port: int | None, *, token: str | None = None) -> None:
        self._port = http_port
        self._token = token if token is not None else os.environ.get(API_TOKEN_ENV) or None
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp  # ~10 MB: loaded by the first call, not by every sidecar

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
                # Invocations may legitimately take long; the caller's gRPC deadline rules.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
            )
        return self._session

    async def __call__(self, request: invoke_pb2.InvokeServiceRequest) -> common_pb2.InvokeResponse:
        if self._port is None:
            raise DaprError(
                "ERR_DIRECT_INVOKE", "invoke API is not ready: the sidecar has no Dapr HTTP port"
            )
        if not request.id:
            raise DaprError(
                "ERR_DIRECT_INVOKE",
                "failed getting app id either from the URL path or the header dapr-app-id",
                http_status=404,
            )
        call = http_call_of_invoke_service(request)
        headers = _forwarded(invocation_metadata.get())
        headers.update(call.headers)
        if self._token:
            headers["dapr-api-token"] = self._token
        url = f"http://127.0.0.1:{self._port}{call.path}"
        if call.query:
            url += "?" + call.query
        import aiohttp
        import yarl

        try:
            async with self._client().request(
                call.method,
                yarl.URL(url, encoded=True),
                data=call.body,
                headers=headers,
                # No content type was given: send none rather than aiohttp's octet-stream.
                skip_auto_headers=("Content-Type",),
            ) as resp:
                body = await resp.read()
                status = resp.status
                content_type = resp.headers.get("content-type", "")
                type_url = resp.headers.get(ANY_TYPE_HEADER, "")
                app_status = resp.headers.get(GRPC_STATUS_HEADER)
        except (aiohttp.ClientError, OSError) as exc:
            raise DaprError(
                "ERR_DIRECT_INVOKE", f"failed to invoke, id: {request.id}, err: {exc}"
            ) from exc
        error = error_of_http_status(status, body, app_status)
        if error is not None:
            raise error
        return invoke_response_of_http(content_type, body, type_url)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
