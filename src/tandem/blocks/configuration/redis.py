"""``configuration.redis``: items are Redis strings ``value||version`` (as Dapr stores
them); changes come from keyspace notifications, which the component switches on."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from tandem.blocks.component_metadata import as_int, lookup
from tandem.blocks.configuration.store import DELETED, ConfigurationItem, Items
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.redis import redis_client

log = logging.getLogger("tandem.configuration")

SEPARATOR = "||"
# K: keyspace channels, g: generic (del, expire...), $: strings, x: expired.
_NOTIFY = "Kg$x"


def parse(raw: bytes | str) -> ConfigurationItem:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    value, sep, version = text.rpartition(SEPARATOR)
    return ConfigurationItem(value, version) if sep else ConfigurationItem(text)


class RedisConfigurationStore:
    def __init__(self, client: aioredis.Redis, db: int) -> None:
        self._client = client
        self._db = db
        self._notifications_on = False

    async def get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        if not keys:
            keys = [k.decode() async for k in self._client.scan_iter(count=500)]
        if not keys:
            return {}
        values = await self._client.mget(list(keys))
        out: Items = {}
        for key, raw in zip(keys, values, strict=True):
            if raw is not None:
                out[key] = parse(raw)
        return out

    async def _enable_notifications(self) -> None:
        if self._notifications_on:
            return
        found: dict[Any, Any] = dict(await self._client.config_get("notify-keyspace-events"))
        current = next(iter(found.values()), b"")
        have = current.decode() if isinstance(current, bytes) else str(current)
        # "A" stands for every event class; K (keyspace channels) is needed either way.
        missing = {"K"} | (set() if "A" in have else set(_NOTIFY))
        missing -= set(have)
        if missing:
            await self._client.config_set("notify-keyspace-events", have + "".join(missing))
        self._notifications_on = True

    async def watch(
        self, keys: Sequence[str], metadata: Mapping[str, str]
    ) -> AsyncGenerator[Items, None]:
        await self._enable_notifications()
        prefix = f"__keyspace@{self._db}__:"
        pubsub = self._client.pubsub()
        try:
            if keys:
                await pubsub.subscribe(*(prefix + k for k in keys))
            else:
                await pubsub.psubscribe(prefix + "*")
            yield {}  # subscribed: changes from here on are seen
            async for message in pubsub.listen():
                if message.get("type") not in ("message", "pmessage"):
                    continue
                channel = message["channel"]
                key = (channel.decode() if isinstance(channel, bytes) else channel)[len(prefix) :]
                raw = await self._client.get(key)
                yield {key: DELETED if raw is None else parse(raw)}
        finally:
            await pubsub.aclose()

    async def close(self) -> None:
        await self._client.aclose()


def create(spec: ComponentSpec, ctx: ComponentContext) -> RedisConfigurationStore:
    md = spec.metadata
    client = redis_client(md, f"configuration store {spec.name}")
    return RedisConfigurationStore(client, as_int("redisDB", lookup(md, "redisDB"), 0))
