"""``bindings.kafka``: ``create`` publishes to ``publishTopic`` (output); the ``topics``
are read as a member of ``consumerGroup`` (input).

Both sides are the ``pubsub.kafka`` component's machinery (same metadata, same consumer
group semantics): a record the app does not take is not committed and comes back after
``consumeRetryInterval``; a member that dies leaves its uncommitted records to the one
that takes its partitions over.
"""

from __future__ import annotations

import asyncio
import contextlib

from tandem.blocks.bindings.binding import (
    BindingError,
    EventHandler,
    InputEvent,
    InvokeRequest,
    InvokeResponse,
)
from tandem.blocks.component_metadata import ComponentConfigError, lookup
from tandem.blocks.pubsub.broker import Message, Outcome, SubscribeOptions
from tandem.blocks.pubsub.kafka import KafkaPubSub, parse_config
from tandem.blocks.pubsub.kafka_subscription import KafkaSubscription
from tandem.blocks.registry import ComponentContext, ComponentSpec


class KafkaBinding:
    def __init__(self, kafka: KafkaPubSub, topics: list[str], publish_topic: str) -> None:
        self._kafka = kafka
        self._topics = topics
        self._publish_topic = publish_topic
        # Output only with a topic to publish to; input only with topics to read.
        self.operations = frozenset({"create"}) if publish_topic else frozenset()
        self.reads = bool(topics)

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if request.operation != "create":
            raise BindingError(f"unsupported operation {request.operation}")
        topic = request.metadata.get("topic") or self._publish_topic
        await self._kafka.publish(topic, request.data, request.metadata)
        return InvokeResponse()

    async def read(self, handler: EventHandler) -> None:
        async def take(message: Message) -> Outcome:
            metadata = {**message.metadata, "topic": message.topic}
            ok = await handler(InputEvent(message.data, metadata))
            return Outcome.SUCCESS if ok else Outcome.RETRY

        subs: list[KafkaSubscription] = []
        try:
            for topic in self._topics:
                subs.append(await self._kafka.subscribe(topic, take, SubscribeOptions()))
            await asyncio.get_running_loop().create_future()  # read until cancelled
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.close()

    async def close(self) -> None:
        await self._kafka.close()


def create(spec: ComponentSpec, ctx: ComponentContext) -> KafkaBinding:
    md = spec.metadata
    topics = [t.strip() for t in (lookup(md, "topics") or "").split(",") if t.strip()]
    publish_topic = (lookup(md, "publishTopic") or "").strip()
    if not topics and not publish_topic:
        raise ComponentConfigError(
            f"binding {spec.name}: metadata topics (input) or publishTopic (output) is required"
        )
    return KafkaBinding(KafkaPubSub(parse_config(spec, ctx)), topics, publish_topic)
