"""``bindings.redis`` (output): ``create`` (SET, with ``ttlInSeconds``), ``get``,
``delete`` and ``increment``/``decrement`` of the request's ``key``."""

from __future__ import annotations

import redis.asyncio as aioredis

from tandem.blocks.bindings.binding import BindingError, InvokeRequest, InvokeResponse
from tandem.blocks.component_metadata import ComponentConfigError, as_int
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.redis import redis_client


class RedisBinding:
    operations = frozenset({"create", "get", "delete", "increment", "decrement"})

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        key = request.metadata.get("key", "")
        if not key:
            raise BindingError("metadata key is required")
        client = self._client
        match request.operation:
            case "create":
                try:
                    ttl = as_int("ttlInSeconds", request.metadata.get("ttlInSeconds"), 0)
                except ComponentConfigError as exc:
                    raise BindingError(str(exc)) from None
                await client.set(key, request.data, ex=ttl if ttl > 0 else None)
                return InvokeResponse()
            case "get":
                value = await client.get(key)
                return InvokeResponse(value.encode() if isinstance(value, str) else value)
            case "delete":
                await client.delete(key)
                return InvokeResponse()
            case "increment":
                await client.incr(key)
                return InvokeResponse()
            case "decrement":
                await client.decr(key)
                return InvokeResponse()
        raise BindingError(f"unsupported operation {request.operation}")

    async def close(self) -> None:
        await self._client.aclose()


def create(spec: ComponentSpec, ctx: ComponentContext) -> RedisBinding:
    return RedisBinding(redis_client(spec.metadata, f"binding {spec.name}"))
