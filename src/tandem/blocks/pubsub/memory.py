"""``pubsub.in-memory``: a process-local broker (tests, single-process apps).

Each (topic, consumer group) has a queue; every group subscribed to a topic gets a copy of
each message, and the consumers of a group compete for it. Nothing survives the process.
A message published to a topic no group has subscribed to yet is dropped, as in Dapr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Mapping, Sequence

from tandem.blocks.component_metadata import as_int, as_seconds, lookup
from tandem.blocks.pubsub._inflight import InFlight
from tandem.blocks.pubsub.broker import (
    Feature,
    Handler,
    Message,
    Outcome,
    PublishEntry,
    SubscribeOptions,
)
from tandem.blocks.registry import ComponentContext, ComponentSpec


def create(spec: ComponentSpec, ctx: ComponentContext) -> MemoryPubSub:
    md = spec.metadata
    return MemoryPubSub(
        group=lookup(md, "consumerID") or ctx.app_id,
        concurrency=as_int("concurrency", lookup(md, "concurrency"), 10),
        redeliver_delay=as_seconds("redeliverInterval", lookup(md, "redeliverInterval"), 0.1),
    )


class _Group:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()


class _Subscription:
    def __init__(self, broker: MemoryPubSub, group: _Group, handler: Handler, limit: int) -> None:
        self._broker = broker
        self._group = group
        self._inflight = InFlight(handler, self._settle, limit)
        self._task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            await self._inflight.wait_free()
            self._inflight.start(await self._group.queue.get())

    async def _settle(self, msg: Message, outcome: Outcome) -> None:
        if outcome is Outcome.RETRY:
            again = dataclasses.replace(msg, redeliveries=msg.redeliveries + 1)
            loop = asyncio.get_running_loop()
            loop.call_later(self._broker.redeliver_delay, self._group.queue.put_nowait, again)

    async def close(self, grace: float = 5.0) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        for msg in await self._inflight.drain(grace):
            self._group.queue.put_nowait(msg)


class MemoryPubSub:
    def __init__(self, *, group: str, concurrency: int = 10, redeliver_delay: float = 0.1) -> None:
        self._default_group = group
        self._concurrency = concurrency
        self.redeliver_delay = redeliver_delay
        self._topics: dict[str, dict[str, _Group]] = {}
        self._ids = itertools.count(1)
        self._subs: list[_Subscription] = []

    @property
    def features(self) -> frozenset[Feature]:
        # Dapr's in-memory bus reports SUBSCRIBE_WILDCARDS, which this broker does not do.
        return frozenset()

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        msg = Message(topic, data, dict(metadata), str(next(self._ids)))
        for group in self._topics.get(topic, {}).values():
            group.queue.put_nowait(msg)

    async def bulk_publish(self, topic: str, entries: Sequence[PublishEntry]) -> list[str]:
        for e in entries:
            await self.publish(topic, e.data, e.metadata)
        return []

    async def subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> _Subscription:
        name = options.group or self._default_group
        group = self._topics.setdefault(topic, {}).setdefault(name, _Group())
        limit = as_int("concurrency", lookup(options.metadata, "concurrency"), self._concurrency)
        sub = _Subscription(self, group, handler, limit)
        self._subs.append(sub)
        return sub

    async def close(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.close(0)
