"""The actors HTTP API (``/v1.0/actors/...``) and the internal route forwarded calls take
(``/_tandem/actors/...``, reached only through the inbound mTLS listener)."""

from __future__ import annotations

from typing import Any

import orjson

from tandem.blocks.actors.engine import NotOwner
from tandem.blocks.actors.service import ActorService
from tandem.blocks.actors.state import ActorStateOp
from tandem.blocks.app_channel import AppResponse
from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import JSON, ApiRequest, ApiResponse
from tandem.ext_proc.router import Router
from tandem.placement.table import Version

FORWARD_PREFIX = "/_tandem/actors"
# Tandem's own listing of this host's live actors (`tandem actors list`).
LISTING_PATH = "/_tandem/actors-here"
VERSION_HEADER = "x-tandem-placement-version"
NOT_OWNER_HEADER = "x-tandem-not-owner"
_BASE = "/v1.0/actors/{actorType}/{actorId}"
# Response headers of the app that reach the caller (the rest are the app server's own).
_PASSED = frozenset({"content-type", "x-daprerrorresponseheader"})


def _reply(resp: AppResponse) -> ApiResponse:
    content_type = b""
    headers = []
    for k, v in resp.headers.items():
        lk = k.lower()
        if lk == "content-type":
            content_type = v.encode()
        elif lk in _PASSED:
            headers.append((lk, v.encode()))
    return ApiResponse(
        status=resp.status, body=resp.body, content_type=content_type, headers=tuple(headers)
    )


def _json_object(req: ApiRequest, code: str) -> dict[str, Any]:
    if not req.body:
        return {}
    try:
        value = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise DaprError(code, f"failed to parse request body: {exc}", http_status=400) from exc
    if not isinstance(value, dict):
        raise DaprError(code, "the request body must be a JSON object", http_status=400)
    return value


def register(router: Router, actors: ActorService) -> None:
    async def invoke(req: ApiRequest) -> ApiResponse:
        p = req.params
        resp = await actors.invoke(p["actorType"], p["actorId"], p["method"], req.body, req.headers)
        return _reply(resp)

    async def forwarded(req: ApiRequest) -> ApiResponse:
        p = req.params
        raw = req.headers.get(VERSION_HEADER, "")
        try:
            version = Version.parse(raw) if raw else None
        except ValueError:
            version = None
        try:
            resp = await actors.invoke_forwarded(
                version, p["actorType"], p["actorId"], p["method"], req.body, req.headers
            )
        except NotOwner as exc:
            return ApiResponse(
                status=409,
                body=orjson.dumps({"errorCode": "ERR_ACTOR_NOT_PLACED_HERE", "message": str(exc)}),
                headers=((NOT_OWNER_HEADER, b"1"),),
            )
        return _reply(resp)

    async def get_state(req: ApiRequest) -> ApiResponse:
        p = req.params
        data = await actors.get_state(p["actorType"], p["actorId"], p["key"])
        if data is None:
            return ApiResponse.empty(204)
        return ApiResponse(status=200, body=data, content_type=JSON)

    async def save_state(req: ApiRequest) -> ApiResponse:
        p = req.params
        try:
            raw = orjson.loads(req.body or b"[]")
        except orjson.JSONDecodeError as exc:
            raise DaprError(
                "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                f"failed to parse request body: {exc}",
                http_status=400,
            ) from exc
        if not isinstance(raw, list):
            raise DaprError(
                "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                "the body must be a list of operations",
                http_status=400,
            )
        ops = []
        for item in raw:
            request = item.get("request") if isinstance(item, dict) else None
            if not isinstance(request, dict) or not isinstance(request.get("key"), str):
                raise DaprError(
                    "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                    "each operation needs a request with a key",
                    http_status=400,
                )
            value = request.get("value")
            ops.append(
                ActorStateOp(
                    operation=str(item.get("operation", "")).lower(),
                    key=request["key"],
                    value=orjson.dumps(value) if "value" in request else b"",
                    metadata={str(k): str(v) for k, v in (request.get("metadata") or {}).items()},
                )
            )
        await actors.transact_state(p["actorType"], p["actorId"], ops)
        return ApiResponse.empty(204)

    async def put_reminder(req: ApiRequest) -> ApiResponse:
        p = req.params
        body = _json_object(req, "ERR_ACTOR_REMINDER_CREATE")
        await actors.create_reminder(p["actorType"], p["actorId"], p["name"], body)
        return ApiResponse.empty(204)

    async def get_reminder(req: ApiRequest) -> ApiResponse:
        p = req.params
        found = await actors.get_reminder(p["actorType"], p["actorId"], p["name"])
        view = {
            k: found.get(k) for k in ("actorID", "actorType", "dueTime", "period", "ttl", "data")
        }
        return ApiResponse.json(view)

    async def delete_reminder(req: ApiRequest) -> ApiResponse:
        p = req.params
        await actors.delete_reminder(p["actorType"], p["actorId"], p["name"])
        return ApiResponse.empty(204)

    async def put_timer(req: ApiRequest) -> ApiResponse:
        p = req.params
        body = _json_object(req, "ERR_ACTOR_TIMER_CREATE")
        await actors.create_timer(p["actorType"], p["actorId"], p["name"], body)
        return ApiResponse.empty(204)

    async def delete_timer(req: ApiRequest) -> ApiResponse:
        p = req.params
        await actors.delete_timer(p["actorType"], p["actorId"], p["name"])
        return ApiResponse.empty(204)

    verbs = ("GET", "POST", "PUT", "DELETE", "PATCH")
    router.add(verbs, _BASE + "/method/{method...}", invoke)
    router.add("GET", _BASE + "/state/{key}", get_state)
    router.add(("POST", "PUT"), _BASE + "/state", save_state)
    router.add(("POST", "PUT"), _BASE + "/reminders/{name}", put_reminder)
    router.add("GET", _BASE + "/reminders/{name}", get_reminder)
    router.add("DELETE", _BASE + "/reminders/{name}", delete_reminder)
    router.add(("POST", "PUT"), _BASE + "/timers/{name}", put_timer)
    router.add("DELETE", _BASE + "/timers/{name}", delete_timer)
    router.add(verbs, FORWARD_PREFIX + "/{actorType}/{actorId}/method/{method...}", forwarded)
