"""The state API over HTTP: Dapr's routes, parsed into domain requests and rendered back.

Only wire work lives here — every rule (prefixes, etags, TTL, transactions) is in
:class:`~tandem.blocks.state.service.StateService`. Like Dapr, a request names its store
before its body is read, so an unknown store wins over a malformed body.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from tandem.blocks.errors import DaprError
from tandem.blocks.state.query import QueryItem
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import (
    BulkGetItem,
    Concurrency,
    Consistency,
    DeleteRequest,
    SetRequest,
    TransactionOperation,
)
from tandem.ext_proc.api import JSON, ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

_CONCURRENCY = {c.value: c for c in Concurrency}
_CONSISTENCY = {c.value: c for c in Consistency}


def register(router: Router, service: StateService) -> None:
    api = _StateHttp(service)
    base = "/v1.0/state/{store}"
    router.add("GET", base + "/{key}", api.get)
    router.add("DELETE", base + "/{key}", api.delete)
    router.add(("POST", "PUT"), base, api.save)
    router.add(("POST", "PUT"), base + "/bulk", api.bulk_get)
    router.add(("POST", "PUT"), base + "/transaction", api.transaction)
    router.add(("POST", "PUT"), "/v1.0-alpha1/state/{store}/query", api.query)
    # GET/DELETE of a key literally named "bulk" or "transaction" still reach the key
    # routes: the router falls back to the parameter when a literal lacks the method.


def malformed(message: str) -> DaprError:
    return DaprError("ERR_MALFORMED_REQUEST", message)


class _StateHttp:
    def __init__(self, service: StateService) -> None:
        self._service = service

    async def get(self, req: ApiRequest) -> ApiResponse:
        store, key = req.params["store"], req.params["key"]
        query = req.query_values()
        self._service.component(store)
        resp = await self._service.get(
            store,
            key,
            metadata=req.query_metadata(),
            consistency=_consistency(_last(query.get("consistency"))),
        )
        if resp.data is None:
            return ApiResponse.empty(204)
        headers: list[tuple[str, bytes]] = []
        if resp.etag:
            headers.append(("etag", resp.etag.encode()))
        headers.extend((f"metadata.{k}", v.encode()) for k, v in resp.metadata.items())
        content_type = resp.metadata.get("contentType")
        return ApiResponse(
            status=200,
            body=resp.data,
            content_type=content_type.encode() if content_type else JSON,
            headers=tuple(headers),
        )

    async def delete(self, req: ApiRequest) -> ApiResponse:
        store, key = req.params["store"], req.params["key"]
        query = req.query_values()
        self._service.component(store)
        # Dapr looks at the presence of If-Match; an empty value means "no etag".
        etag = req.headers.get("if-match") or None
        await self._service.delete(
            store,
            DeleteRequest(
                key,
                etag,
                req.query_metadata(),
                _concurrency(_last(query.get("concurrency"))),
                _consistency(_last(query.get("consistency"))),
            ),
        )
        return ApiResponse.empty(204)

    async def save(self, req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        self._service.component(store)
        body = req.json()
        if not isinstance(body, list):
            raise malformed("failed deserializing HTTP body: expected a JSON array of state items")
        query_md = req.query_metadata()
        items = [_set_request(item, query_md) for item in body]
        if items:
            await self._service.save(store, items)
        return ApiResponse.empty(204)

    async def bulk_get(self, req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        self._service.component(store)
        body = _object(req.json(), "bulk get request")
        keys = body.get("keys")
        if keys is None:
            keys = []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise malformed('"keys" must be an array of strings')
        parallelism = body.get("parallelism", 0)
        if parallelism is None:
            parallelism = 0
        if isinstance(parallelism, bool) or not isinstance(parallelism, int):
            raise malformed('"parallelism" must be an integer')
        metadata = _metadata(body.get("metadata"), req.query_metadata())
        items = await self._service.bulk_get(
            store, keys, parallelism=parallelism, metadata=metadata
        )
        return ApiResponse.json([_bulk_item(i) for i in items])

    async def transaction(self, req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        self._service.transactional(store)
        body = _object(req.json(), "transaction request")
        raw_ops = body.get("operations")
        if raw_ops is None:
            raw_ops = []
        if not isinstance(raw_ops, list):
            raise malformed('"operations" must be an array')
        metadata = _metadata(body.get("metadata"), req.query_metadata())
        ops = [_operation(op) for op in raw_ops]
        if ops:
            await self._service.transact(store, ops, metadata)
        return ApiResponse.empty(204)

    async def query(self, req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        self._service.querier(store)
        result = await self._service.query(store, req.body, req.query_metadata())
        if not result.items:
            return ApiResponse.empty(204)
        out: dict[str, object] = {"results": [_query_item(i) for i in result.items]}
        if result.token:
            out["token"] = result.token
        if result.metadata:
            out["metadata"] = dict(result.metadata)
        return ApiResponse.json(out)


# -- parsing ----------------------------------------------------------------------------------


def _last(values: list[str] | None) -> str | None:
    return values[-1] if values else None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(f"failed deserializing HTTP body: {what} must be a JSON object")
    return value


def _concurrency(value: object) -> Concurrency | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in _CONCURRENCY:
        return _CONCURRENCY[value]
    raise malformed(f"invalid concurrency {value!r}: expected first-write or last-write")


def _consistency(value: object) -> Consistency | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value in _CONSISTENCY:
        return _CONSISTENCY[value]
    raise malformed(f"invalid consistency {value!r}: expected eventual or strong")


def _metadata(value: object, query_md: Mapping[str, str]) -> dict[str, str]:
    """Body metadata merged with the URL's ``metadata.*`` (the URL wins, as in Dapr)."""
    if value is None:
        return dict(query_md)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise malformed('"metadata" must be an object of string values')
    return {**value, **query_md} if query_md else value


def _etag(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise malformed('"etag" must be a string')
    return value


def _options(value: object) -> tuple[Concurrency | None, Consistency | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise malformed('"options" must be an object')
    return _concurrency(value.get("concurrency")), _consistency(value.get("consistency"))


def _key(item: dict[str, Any]) -> str:
    key = item.get("key")
    if key is None:
        raise malformed('"key" is a required field')
    if not isinstance(key, str):
        raise malformed('"key" must be a string')
    return key


def _set_request(raw: object, query_md: Mapping[str, str]) -> SetRequest:
    item = _object(raw, "a state item")
    key = _key(item)
    if "value" not in item:
        raise malformed('"value" is a required field')
    concurrency, consistency = _options(item.get("options"))
    return SetRequest(
        key=key,
        # Dapr stores the JSON text of the value: "x" keeps its quotes, objects stay JSON.
        value=orjson.dumps(item["value"]),
        etag=_etag(item.get("etag")),
        metadata=_metadata(item.get("metadata"), query_md),
        concurrency=concurrency,
        consistency=consistency,
    )


def _operation(raw: object) -> TransactionOperation:
    op = _object(raw, "a transaction operation")
    kind = op.get("operation")
    if not isinstance(kind, str):
        raise malformed('"operation" must be a string')
    if kind == "upsert":
        return _set_request(op.get("request"), {})
    if kind == "delete":
        request = _object(op.get("request"), "a delete request")
        concurrency, consistency = _options(request.get("options"))
        return DeleteRequest(
            key=_key(request),
            etag=_etag(request.get("etag")),
            metadata=_metadata(request.get("metadata"), {}),
            concurrency=concurrency,
            consistency=consistency,
        )
    raise DaprError("ERR_NOT_SUPPORTED_STATE_OPERATION", f"operation type {kind} not supported")


# -- rendering --------------------------------------------------------------------------------


def _bulk_item(item: BulkGetItem) -> dict[str, object]:
    out: dict[str, object] = {"key": item.key}
    if item.error:
        out["error"] = item.error
        return out
    resp = item.response
    if resp is None or resp.data is None:
        return out
    out["data"] = _json_data(resp.data)
    if resp.etag:
        out["etag"] = resp.etag
    if resp.metadata:
        out["metadata"] = dict(resp.metadata)
    return out


def _query_item(item: QueryItem) -> dict[str, object]:
    out: dict[str, object] = {"key": item.key, "data": _json_data(item.data)}
    if item.etag:
        out["etag"] = item.etag
    return out


def _json_data(data: bytes) -> object:
    """Stored bytes as a JSON value: embedded verbatim when they are JSON (HTTP writes),
    else as a string (raw gRPC writes), base64 when not even UTF-8."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return data.decode()
        except UnicodeDecodeError:
            return base64.b64encode(data).decode()
    return orjson.Fragment(data)
