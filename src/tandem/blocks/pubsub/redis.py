"""``pubsub.redis``: Redis Streams, one client per component instance.

- Publish: ``XADD topic [MAXLEN ~ maxLenApprox] * data <bytes> metadata <json>``;
  concurrent publishes go out in one pipeline (``tandem.blocks.coalesce``), each caller
  answered once its own entry is stored.
- Subscribe: the consumer group is ``consumerID`` (default: the app id), created at the
  start of the stream (``0``) if missing; each component instance is one consumer with a
  unique name and reads with ``XREADGROUP ... >``.
- A message is ``XACK``ed only after its handler returned SUCCESS or DROP (the acks of
  handlers finishing together share one ``XACK``); a RETRY stays pending. On subscribing and then every ``redeliverInterval`` the consumer takes over (``XAUTOCLAIM``) entries of
  its group idle longer than ``processingTimeout`` — those of consumers that died, and its
  own retries. While a handler runs, its entry's idle time is reset (``XCLAIM ... JUSTID``)
  so a slow handler is not raced by another consumer. A consumer that closes marks what
  it still holds as idle past ``processingTimeout``, so the next reclaim takes it at once.
- Closing does not rely on cancelling a Redis call: redis-py can lose a cancellation that
  lands mid-command (the task then sits in the next ``XREADGROUP``), so the loops also stop
  on a closing flag, a read that returns after it is not started, and ``close`` waits for
  the loops at most one read block before it goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tandem.blocks.coalesce import Coalescer
from tandem.blocks.component_metadata import (
    as_bool,
    as_int,
    as_seconds,
    lookup,
    redis_address,
    redis_read_timeout,
)
from tandem.blocks.pubsub._inflight import InFlight
from tandem.blocks.pubsub.broker import (
    Feature,
    Handler,
    Message,
    Outcome,
    PublishEntry,
    SubscribeOptions,
)
from tandem.blocks.redis_wire import Links, command
from tandem.blocks.registry import ComponentContext, ComponentSpec

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
# How long ``close`` waits for its loops to end after cancelling them: one blocking read.
CLOSE_WAIT_S = READ_BLOCK_MS / 1000 + 0.5


def create(spec: ComponentSpec, ctx: ComponentContext) -> RedisPubSub:
    md = spec.metadata
    host, port = redis_address(md, f"pubsub {spec.name}")
    # A blocking pool: a burst of publishes waits for a connection instead of failing.
    pool = aioredis.BlockingConnectionPool(
        host=host,
        port=port,
        db=as_int("redisDB", lookup(md, "redisDB"), 0),
        username=lookup(md, "redisUsername") or None,
        password=lookup(md, "redisPassword") or None,
        socket_connect_timeout=as_seconds("dialTimeout", lookup(md, "dialTimeout"), 5.0),
        # No socket timeout: with one, redis-py sends every command through
        # asyncio.wait_for (a task and a loop turn more before each write, on the way of
        # every publish). readTimeout bounds each call here instead (RedisPubSub.bounded).
        socket_timeout=None,
        max_connections=as_int("poolSize", lookup(md, "poolSize"), 50),
        timeout=30,
        **_tls(as_bool(lookup(md, "enableTLS"))),
    )
    client = aioredis.Redis(connection_pool=pool, decode_responses=False)
    max_len = as_int("maxLenApprox", lookup(md, "maxLenApprox"), 0)
    return RedisPubSub(
        client,
        group=lookup(md, "consumerID") or ctx.app_id,
        concurrency=as_int("concurrency", lookup(md, "concurrency"), 10),
        processing_timeout=as_seconds("processingTimeout", lookup(md, "processingTimeout"), 60.0),
        redeliver_interval=as_seconds("redeliverInterval", lookup(md, "redeliverInterval"), 60.0),
        max_len=max_len or None,
        read_timeout=redis_read_timeout(md),
    )


def _tls(enabled: bool) -> dict[str, Any]:
    return {"connection_class": aioredis.SSLConnection} if enabled else {}


def _message(topic: str, entry_id: bytes, fields: Mapping[bytes, bytes], again: int) -> Message:
    raw_md = fields.get(b"metadata")
    md = orjson.loads(raw_md) if raw_md else {}
    return Message(topic, fields.get(b"data", b""), md, entry_id.decode(), again)


class _Subscription:
    def __init__(
        self, broker: RedisPubSub, topic: str, group: str, handler: Handler, limit: int
    ) -> None:
        self._b = broker
        self._topic = topic
        self._group = group
        self._consumer = f"{group}-{uuid.uuid4().hex[:12]}"
        self._inflight = InFlight(handler, self._settle, limit)
        self._closing = False
        self._unstarted: list[Any] = []  # read after close began: pending, never handled
        self._tasks = [asyncio.create_task(self._read())]
        if broker.redeliver_interval > 0:
            self._tasks.append(asyncio.create_task(self._reclaim()))
        self._tasks.append(asyncio.create_task(self._keep_alive()))

    async def _read(self) -> None:
        client = self._b.client
        while not self._closing:
            await self._inflight.wait_free()
            try:
                # Reads block up to READ_BLOCK_MS on the server, so they may take longer.
                async with self._b.bounded(READ_BLOCK_MS / 1000):
                    res: Any = await client.xreadgroup(
                        self._group,
                        self._consumer,
                        {self._topic: ">"},
                        count=self._inflight.free,
                        block=READ_BLOCK_MS,
                    )
            except Exception as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    # The stream was deleted under us: recreate the group and go on.
                    with contextlib.suppress(Exception):
                        await self._b.ensure_group(self._topic, self._group)
                    continue
                log.warning("redis read of %s failed, retrying: %s", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            started = False
            for _stream, entries in res or ():
                for entry_id, fields in entries:
                    if self._closing:
                        self._unstarted.append(entry_id)
                    else:
                        self._inflight.start(_message(self._topic, entry_id, fields, 0))
                        started = True
            if started:
                # Let the handlers just started send their deliveries before this loop
                # spends ~0.1 ms of redis-py getting the next read out (it suspends only
                # once the command is written): off the path of a message to its app.
                await asyncio.sleep(0)

    async def _reclaim(self) -> None:
        client = self._b.client
        idle_ms = int(self._b.processing_timeout * 1000)
        first = True
        while not self._closing:
            # The first pass runs at once (as Dapr's does): a restarted app takes over what
            # a crashed or closed consumer of its group left pending without waiting.
            if not first:
                await asyncio.sleep(self._b.redeliver_interval)
            first = False
            start: Any = "0-0"
            try:
                while self._inflight.free > 0:
                    held = {m.id for m in self._inflight.messages()}
                    async with self._b.bounded():
                        res = await client.xautoclaim(
                            self._topic,
                            self._group,
                            self._consumer,
                            idle_ms,
                            start_id=start,
                            count=self._inflight.free,
                        )
                    start, entries = res[0], res[1]
                    deleted = res[2] if len(res) > 2 else []
                    if deleted:  # trimmed away while pending: nothing left to deliver
                        async with self._b.bounded():
                            await client.xack(self._topic, self._group, *deleted)
                    for entry_id, fields in entries:
                        if fields is None or entry_id.decode() in held:
                            continue
                        if self._closing:
                            self._unstarted.append(entry_id)
                        else:
                            self._inflight.start(_message(self._topic, entry_id, fields, 1))
                    if start in (b"0-0", "0-0"):
                        break
            except Exception as exc:
                log.warning("redis reclaim on %s failed: %s", self._topic, exc)

    async def _keep_alive(self) -> None:
        """Reset the idle time of entries whose handlers still run (they are not dead)."""
        client = self._b.client
        every = max(self._b.processing_timeout / 3, 0.05)
        while not self._closing:
            await asyncio.sleep(every)
            ids: list[Any] = [m.id for m in self._inflight.messages()]
            if not ids:
                continue
            with contextlib.suppress(Exception):
                async with self._b.bounded():
                    await client.xclaim(
                        self._topic, self._group, self._consumer, 0, ids, justid=True
                    )

    async def _settle(self, msg: Message, outcome: Outcome) -> None:
        if outcome is not Outcome.RETRY:
            await self._b.ack(self._topic, self._group, msg.id)

    async def close(self, grace: float = 5.0) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        # A loop whose cancellation redis-py lost ends by the flag after its current read.
        await asyncio.wait(self._tasks, timeout=CLOSE_WAIT_S)
        # What is left stays pending, marked idle for longer than processingTimeout, so the
        # next reclaim by another consumer of the group takes it at once.
        left: list[Any] = [m.id for m in await self._inflight.drain(grace)]
        left += self._unstarted
        if left:
            idle = int(self._b.processing_timeout * 1000) + 1
            with contextlib.suppress(Exception):
                async with self._b.bounded():
                    await self._b.client.xclaim(
                        self._topic, self._group, self._consumer, 0, left, idle=idle, justid=True
                    )
        self._b.forget(self)


class RedisPubSub:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        group: str,
        concurrency: int = 10,
        processing_timeout: float = 60.0,
        redeliver_interval: float = 60.0,
        max_len: int | None = None,
        read_timeout: float | None = 5.0,
    ) -> None:
        self.client = client
        self._read_timeout = read_timeout
        self._default_group = group
        self._concurrency = concurrency
        self.processing_timeout = processing_timeout
        self.redeliver_interval = redeliver_interval
        self._subs: list[_Subscription] = []
        # Publishes and acks in flight together share one round trip each, sent raw over a
        # kept connection (redis_wire).
        self._adds: Coalescer[bytes, None] = Coalescer(self._write_adds)
        self._add_links = Links(client)
        self._acks: Coalescer[tuple[str, str, str], None] = Coalescer(self._write_acks)
        self._ack_links = Links(client)
        self._trim = (b"MAXLEN", b"~", b"%d" % max_len) if max_len else ()

    @property
    def features(self) -> frozenset[Feature]:
        return frozenset()  # as Dapr's Redis Streams component: none

    def bounded(self, extra: float = 0.0) -> asyncio.Timeout:
        """The time a Redis call may take: ``readTimeout`` (plus ``extra``), as the socket
        timeout bounded it before (redis-py closes a connection whose call is cut short)."""
        return asyncio.timeout(None if self._read_timeout is None else self._read_timeout + extra)

    def _xadd(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> bytes:
        """One entry's XADD, packed (the same layout for single and bulk publishes)."""
        fields = (b"data", data, b"metadata", orjson.dumps(dict(metadata)))
        return command(b"XADD", topic.encode(), *self._trim, b"*", *fields)

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        # Packed here, so a topic that cannot be sent fails its own call, not a batch.
        await self._adds.submit(self._xadd(topic, data, metadata))

    async def _write_adds(self, xadds: list[bytes]) -> list[BaseException | None]:
        async with self.bounded():
            results = await self._add_links.roundtrip(b"".join(xadds), len(xadds))
        return [r if isinstance(r, Exception) else None for r in results]

    async def ack(self, topic: str, group: str, msg_id: str) -> None:
        await self._acks.submit((topic, group, msg_id))

    async def _write_acks(self, items: list[tuple[str, str, str]]) -> list[BaseException | None]:
        ids: dict[tuple[str, str], list[str]] = {}
        for topic, group, msg_id in items:
            ids.setdefault((topic, group), []).append(msg_id)
        xacks = b"".join(
            command(b"XACK", topic.encode(), group.encode(), *(i.encode() for i in some))
            for (topic, group), some in ids.items()
        )
        async with self.bounded():
            results = await self._ack_links.roundtrip(xacks, len(ids))
        failed = {key: r for key, r in zip(ids, results, strict=True) if isinstance(r, Exception)}
        return [failed.get((topic, group)) for topic, group, _ in items]

    async def bulk_publish(self, topic: str, entries: Sequence[PublishEntry]) -> list[str]:
        # One round trip of its own (Links gives each concurrent caller its own connection).
        xadds = b"".join([self._xadd(topic, e.data, e.metadata) for e in entries])
        async with self.bounded():
            results = await self._add_links.roundtrip(xadds, len(entries))
        return [
            e.entry_id for e, r in zip(entries, results, strict=True) if isinstance(r, Exception)
        ]

    async def ensure_group(self, topic: str, group: str) -> None:
        try:
            async with self.bounded():
                await self.client.xgroup_create(topic, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> _Subscription:
        group = options.group or self._default_group
        await self.ensure_group(topic, group)
        limit = as_int("concurrency", lookup(options.metadata, "concurrency"), self._concurrency)
        sub = _Subscription(self, topic, group, handler, limit)
        self._subs.append(sub)
        return sub

    def forget(self, sub: _Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.close(0)
        await self.client.aclose()
