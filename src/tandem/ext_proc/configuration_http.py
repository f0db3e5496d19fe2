"""The configuration API over HTTP (``/v1.0`` and the older ``/v1.0-alpha1`` paths): get,
subscribe (changes pushed to the app's ``POST /configuration/{store}/{key}``), unsubscribe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.configuration.service import ConfigurationService, Subscription
from tandem.blocks.configuration.store import ConfigurationItem, Items
from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

log = logging.getLogger("tandem.configuration")


def item_json(item: ConfigurationItem) -> dict[str, Any]:
    return {"value": item.value, "version": item.version, "metadata": dict(item.metadata)}


def items_json(items: Items) -> dict[str, Any]:
    return {key: item_json(item) for key, item in items.items()}


async def push(channel: AppChannel, sub: Subscription) -> None:
    """Each change to the app, one call per key, as Dapr does; a failed call is logged."""
    async for items in sub.changes():
        for key, item in items.items():
            body = orjson.dumps({"id": sub.id, "items": {key: item_json(item)}})
            path = f"/configuration/{sub.store}/{key}"
            try:
                resp = await channel.request(
                    "POST", path, body=body, headers={"content-type": "application/json"}
                )
            except AppChannelError as exc:
                log.warning("configuration update to the app failed: %s", exc)
                continue
            if resp.status != 200:
                log.warning("the app answered %d to configuration update %s", resp.status, path)


def register(
    router: Router,
    service: ConfigurationService,
    app_channel: Callable[[], AppChannel | None],
) -> None:
    async def get(req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        keys = req.query_values().get("key", [])
        items = await service.get(store, keys, req.query_metadata())
        if not items:
            return ApiResponse.empty(204)
        return ApiResponse.json(items_json(items))

    async def subscribe(req: ApiRequest) -> ApiResponse:
        store = req.params["store"]
        service.component(store)
        channel = app_channel()
        if channel is None:
            raise DaprError("ERR_APP_CHANNEL_NIL", "app channel is not initialized")
        keys = req.query_values().get("key", [])
        sub = await service.subscribe(store, keys, req.query_metadata())
        sub.tasks.append(asyncio.create_task(push(channel, sub), name=f"config-push-{sub.id}"))
        return ApiResponse.json({"id": sub.id})

    async def unsubscribe(req: ApiRequest) -> ApiResponse:
        try:
            await service.unsubscribe(req.params["store"], req.params["id"])
        except DaprError as err:
            return ApiResponse.json({"ok": False, "message": err.message}, status=500)
        return ApiResponse.json({"ok": True})

    for version in ("v1.0", "v1.0-alpha1"):
        base = f"/{version}/configuration/{{store}}"
        router.add("GET", base, get)
        router.add("GET", base + "/subscribe", subscribe)
        router.add("GET", base + "/{id}/unsubscribe", unsubscribe)
