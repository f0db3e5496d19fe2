"""``pubsub.kafka``: Apache Kafka (or any Kafka-protocol broker) through aiokafka.

- Publish: one producer per component instance, started on first use and reused, with
  ``acks=all``; ``publish`` returns once the broker acknowledged the record. Metadata
  travel as record headers; ``partitionKey`` (or ``key``) is also the record key.
- Topics are created the first time a component publishes to or subscribes to them, if
  they do not exist.

Dapr's metadata: ``brokers`` (required), ``consumerGroup`` / ``consumerID``, ``clientID``,
``authType`` (only ``none``, which like Dapr means plaintext), ``initialOffset``,
``sessionTimeout``, ``heartbeatInterval``, ``consumeRetryInterval`` (Go durations or
milliseconds), ``maxMessageBytes``. Tandem's own: ``numPartitions`` and
``replicationFactor`` of created topics (1, 1) and ``publishTimeout`` (10s), the longest a
publish waits for the broker before it fails.
- Subscribe: one consumer per subscription, a member of the consumer group
  (``consumerGroup``, else ``consumerID``, else the app id). Offsets are committed by hand.

Delivery invariant (at-least-once, as in :mod:`.broker`): the committed offset of a
partition never passes a record whose handler has not returned SUCCESS or DROP; RETRY
hands the same record again after ``consumeRetryInterval`` (see :mod:`.kafka_subscription`).
A consumer that stops or dies leaves everything past its last commit to the member that
takes the partition over.

Where a group starts: a partition the group has never committed starts at
``initialOffset`` — ``oldest`` is the partition's start, ``newest`` its end *as it was when
``subscribe`` was called*, so a message published after ``subscribe`` returns is always
delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tandem.blocks.component_metadata import ComponentConfigError, as_int, lookup
from tandem.blocks.pubsub.broker import Feature, Handler, PublishEntry, SubscribeOptions
from tandem.blocks.pubsub.kafka_subscription import FETCH_WAIT_MS, KafkaSubscription
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.resources.durations import parse_duration

log = logging.getLogger(__name__)

T = TypeVar("T")

TOPIC_ALREADY_EXISTS = 36
# How long a rebalance waits for a handler in flight on a revoked partition.
MAX_REVOKE_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    brokers: list[str]
    group: str
    client_id: str
    oldest: bool = False
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    retry_interval_s: float = 0.1
    max_message_bytes: int = 1_048_576
    publish_timeout_ms: int = 10_000
    partitions: int = 1
    replication_factor: int = 1

    def common(self) -> dict[str, Any]:
        """Client settings shared by the producer, the consumers and the admin client."""
        return {
            "bootstrap_servers": self.brokers,
            "client_id": self.client_id,
            "security_protocol": "PLAINTEXT",
        }


def _millis(name: str, value: str | None, default: int) -> int:
    """A Go duration (``"10s"``) or, as Dapr also accepts, a number of milliseconds."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        return int(parse_duration(text).total_seconds() * 1000)
    except ValueError as exc:
        raise ComponentConfigError(f"metadata {name}: {exc}") from None


def parse_config(spec: ComponentSpec, ctx: ComponentContext) -> KafkaConfig:
    md = spec.metadata
    brokers = [b.strip() for b in (lookup(md, "brokers") or "").split(",") if b.strip()]
    if not brokers:
        raise ComponentConfigError(f"pubsub {spec.name}: metadata brokers is required")
    auth = (lookup(md, "authType") or "none").strip().lower()
    if auth != "none":
        raise ComponentConfigError(
            f"pubsub {spec.name}: metadata authType {auth!r} is not supported (supported: none)"
        )
    offset = (lookup(md, "initialOffset") or "newest").strip().lower()
    if offset not in ("newest", "oldest"):
        raise ComponentConfigError(
            f"pubsub {spec.name}: metadata initialOffset {offset!r} must be newest or oldest"
        )
    session = _millis("sessionTimeout", lookup(md, "sessionTimeout"), 10_000)
    heartbeat = _millis("heartbeatInterval", lookup(md, "heartbeatInterval"), 3_000)
    if heartbeat >= session:
        raise ComponentConfigError(
            f"pubsub {spec.name}: metadata heartbeatInterval must be shorter than sessionTimeout"
        )
    # With authType none Dapr talks plaintext whatever disableTls says; so do we.
    return KafkaConfig(
        brokers=brokers,
        group=lookup(md, "consumerGroup", "consumerID") or ctx.app_id,
        client_id=lookup(md, "clientID") or ctx.app_id,
        oldest=offset == "oldest",
        session_timeout_ms=session,
        heartbeat_interval_ms=heartbeat,
        retry_interval_s=_millis("consumeRetryInterval", lookup(md, "consumeRetryInterval"), 100)
        / 1000,
        max_message_bytes=as_int("maxMessageBytes", lookup(md, "maxMessageBytes"), 1_048_576),
        publish_timeout_ms=_millis("publishTimeout", lookup(md, "publishTimeout"), 10_000),
        partitions=as_int("numPartitions", lookup(md, "numPartitions"), 1),
        replication_factor=as_int("replicationFactor", lookup(md, "replicationFactor"), 1),
    )


def create(spec: ComponentSpec, ctx: ComponentContext) -> KafkaPubSub:
    return KafkaPubSub(parse_config(spec, ctx))


def _headers(metadata: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in metadata.items()]


def _key(metadata: Mapping[str, str]) -> bytes | None:
    key = lookup(metadata, "partitionKey", "key")
    return key.encode() if key else None


class KafkaPubSub:
    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._producer: AIOKafkaProducer[Any, Any] | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._start_lock = asyncio.Lock()
        self._topics: set[str] = set()
        self._subs: list[KafkaSubscription] = []

    @property
    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.BULK_PUBLISH})

    # -- clients -----------------------------------------------------------------------

    async def _started_producer(self) -> AIOKafkaProducer[Any, Any]:
        async with self._start_lock:
            if self._producer is None:
                producer: AIOKafkaProducer[Any, Any] = AIOKafkaProducer(
                    **self.config.common(),
                    acks="all",
                    max_request_size=self.config.max_message_bytes,
                    request_timeout_ms=self.config.publish_timeout_ms,
                )
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        async with self._start_lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    **self.config.common(), request_timeout_ms=self.config.publish_timeout_ms
                )
                try:
                    await admin.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await admin.close()
                    raise
                self._admin = admin
            admin = self._admin
        new = NewTopic(topic, self.config.partitions, self.config.replication_factor)
        res = await admin.create_topics([new])
        for _name, code, *rest in res.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                # Not fatal: the cluster may forbid creating topics that exist anyway; if
                # it really is missing, the publish or the subscription says so.
                detail = rest[0] if rest else ""
                log.warning("kafka: creating topic %r failed (%s): %s", topic, code, detail)
        self._topics.add(topic)

    # -- publishing --------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        await self._deadline(self._publish(topic, data, metadata))

    async def _publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None:
        await self.ensure_topic(topic)
        producer = await self._started_producer()
        await producer.send_and_wait(topic, data, key=_key(metadata), headers=_headers(metadata))

    async def bulk_publish(self, topic: str, entries: Sequence[PublishEntry]) -> list[str]:
        try:
            await self._deadline(self.ensure_topic(topic))
            producer = await self._deadline(self._started_producer())
        except Exception as exc:
            log.warning("kafka bulk publish to %s failed: %s", topic, exc)
            return [e.entry_id for e in entries]

        async def one(e: PublishEntry) -> None:
            sent = await producer.send(
                topic, e.data, key=_key(e.metadata), headers=_headers(e.metadata)
            )
            await sent

        results = await asyncio.gather(
            *(self._deadline(one(e)) for e in entries), return_exceptions=True
        )
        return [
            e.entry_id
            for e, r in zip(entries, results, strict=True)
            if isinstance(r, BaseException)
        ]

    async def _deadline(self, aw: Awaitable[T]) -> T:
        # The producer's own request timeout normally fires first; this bounds the rest
        # (metadata waits, reconnects) so a publish never hangs on a vanished broker.
        timeout = self.config.publish_timeout_ms / 1000 + 1.0
        try:
            return await asyncio.wait_for(aw, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"kafka: no answer from {self.config.brokers} within {timeout}s"
            ) from None

    # -- subscribing -------------------------------------------------------------------

    async def subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> KafkaSubscription:
        group = options.group or self.config.group
        await self._deadline(self.ensure_topic(topic))
        cfg = self.config
        consumer: AIOKafkaConsumer[Any, Any] = AIOKafkaConsumer(
            **cfg.common(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if cfg.oldest else "latest",
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            # Room for a revoked partition's handler to finish before the group moves on.
            rebalance_timeout_ms=cfg.session_timeout_ms + int(MAX_REVOKE_GRACE_S * 1000),
            fetch_max_wait_ms=FETCH_WAIT_MS,
            max_partition_fetch_bytes=max(cfg.max_message_bytes, 1_048_576),
        )
        try:
            await self._deadline(consumer.start())
            initial = await self._deadline(self._ends(consumer, topic))
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        sub = KafkaSubscription(
            consumer,
            topic,
            handler,
            initial=initial,
            oldest=cfg.oldest,
            retry_interval_s=cfg.retry_interval_s,
            revoke_grace_s=min(MAX_REVOKE_GRACE_S, cfg.session_timeout_ms / 1000),
            on_close=self.forget,
        )
        self._subs.append(sub)
        # Joining the group takes a moment; wait for it so the subscription is in place
        # when this returns (the recorded ends already make that safe for newest).
        join_wait = cfg.session_timeout_ms / 1000 * 2 + 5
        try:
            await asyncio.wait_for(sub.joined.wait(), join_wait)
        except TimeoutError:
            log.warning("kafka: group %s not joined within %.0fs; joining on", group, join_wait)
        return sub

    async def _ends(
        self, consumer: AIOKafkaConsumer[Any, Any], topic: str
    ) -> dict[TopicPartition, int]:
        await consumer.topics()  # refresh metadata: the topic may be new
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            return {}
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp: int(off) for tp, off in ends.items()}

    def forget(self, sub: KafkaSubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.close(0)
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
