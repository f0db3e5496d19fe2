"""The output bindings API over HTTP: ``POST|PUT /v1.0/bindings/{name}``."""

from __future__ import annotations

import orjson

from tandem.blocks.bindings.service import BindingsService, InvokeFailedError
from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import JSON, ApiRequest, ApiResponse
from tandem.ext_proc.router import Router


def register(router: Router, service: BindingsService) -> None:
    async def invoke(req: ApiRequest) -> ApiResponse:
        return await invoke_http(service, req)

    router.add(("POST", "PUT"), "/v1.0/bindings/{name}", invoke)


def _malformed(message: str) -> DaprError:
    return DaprError("ERR_MALFORMED_REQUEST", message)


def _headers(metadata: dict[str, str] | object) -> tuple[tuple[str, bytes], ...]:
    if not isinstance(metadata, dict):
        return ()
    return tuple(
        (f"metadata.{k}", str(v).replace("\r", " ").replace("\n", " ").encode())
        for k, v in metadata.items()
    )


async def invoke_http(service: BindingsService, req: ApiRequest) -> ApiResponse:
    body = req.json() if req.body.strip() else {}
    if not isinstance(body, dict):
        raise _malformed("failed deserializing HTTP body: expected a JSON object")
    operation = body.get("operation", "")
    if not isinstance(operation, str):
        raise _malformed('"operation" must be a string')
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _malformed('"metadata" must be an object of string values')
    # Dapr hands the component the JSON text of "data": "x" arrives with its quotes.
    data = orjson.dumps(body["data"]) if body.get("data") is not None else b""
    for key in ("traceparent", "tracestate"):
        if req.headers.get(key) and key not in metadata:
            metadata[key] = req.headers[key]
    try:
        resp = await service.invoke(req.params["name"], operation, data, metadata)
    except InvokeFailedError as err:
        error = ApiResponse.error(err)
        error.headers = _headers(dict(err.metadata))
        return error
    headers = _headers(dict(resp.metadata))
    if not resp.data:
        return ApiResponse(status=204, body=b"", content_type=b"", headers=headers)
    content_type = resp.content_type.encode() if resp.content_type else JSON
    return ApiResponse(status=200, body=resp.data, content_type=content_type, headers=headers)
