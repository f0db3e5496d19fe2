"""The lock API over HTTP: ``POST /v1.0-alpha1/lock/{store}`` and ``/unlock/{store}``."""

from __future__ import annotations

from typing import Any

from tandem.blocks.errors import DaprError
from tandem.blocks.lock.service import LockService
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router


def _body(req: ApiRequest) -> dict[str, Any]:
    body = req.json()
    if not isinstance(body, dict):
        raise DaprError("ERR_MALFORMED_REQUEST", "the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise DaprError("ERR_MALFORMED_REQUEST", f"{name} must be a string")
    return value


def _expiry(body: dict[str, Any]) -> int:
    value = body.get("expiryInSeconds", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DaprError("ERR_MALFORMED_REQUEST", "expiryInSeconds must be an integer")
    return value


def register(router: Router, service: LockService) -> None:
    async def lock(req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        service.component(store)
        body = _body(req)
        success = await service.try_lock(
            store, _text(body, "resourceId"), _text(body, "lockOwner"), _expiry(body)
        )
        return ApiResponse.json({"success": success})

    async def unlock(req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        service.component(store)
        body = _body(req)
        status = await service.unlock(store, _text(body, "resourceId"), _text(body, "lockOwner"))
        return ApiResponse.json({"status": int(status)})

    router.add("POST", "/v1.0-alpha1/lock/{store}", lock)
    router.add("POST", "/v1.0-alpha1/unlock/{store}", unlock)
