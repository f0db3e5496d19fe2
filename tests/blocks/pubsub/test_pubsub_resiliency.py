"""Resiliency on pub/sub: the inbound circuit breaker holds deliveries to a failing app for
its ``timeout``; the outbound policy retries publishing to a broker that failed."""

from __future__ import annotations

import asyncio
import textwrap
import time

from tandem.blocks.pubsub.delivery import Delivery, DeliveryResult, DeliveryStatus
from tandem.blocks.pubsub.memory import MemoryPubSub
from tandem.blocks.pubsub.scopes import TopicScopes
from tandem.blocks.pubsub.service import PublishRequest, PubSubComponent, PubSubService
from tandem.blocks.pubsub.subscriber import Subscriber
from tandem.blocks.pubsub.subscriptions import SubscriptionType, TopicSubscription
from tandem.ext_proc.blocks_wiring import pubsub_policy_wrapper
from tandem.resources import Resiliency, RoutingRule
from tandem.resources.loader import parse_text

OPEN_FOR = 1.0

RESILIENCY = f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {{name: r}}
spec:
  policies:
    retries:
      quick: {{policy: constant, duration: 10ms, maxRetries: -1}}
    circuitBreakers:
      cb: {{trip: consecutiveFailures > 2, timeout: {OPEN_FOR}s}}
  targets:
    components:
      pubsub:
        inbound: {{retry: quick, circuitBreaker: cb}}
        outbound: {{retry: quick}}
"""


def resiliency() -> Resiliency:
    (res,) = parse_text(textwrap.dedent(RESILIENCY), "r.yaml")
    assert isinstance(res, Resiliency)
    return res


class TimedTarget:
    """Fails the first ``failures`` deliveries, then succeeds; notes when each came."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.times: list[float] = []
        self.done = asyncio.Event()

    async def deliver(self, delivery: Delivery, timeout: float | None) -> DeliveryResult:
        self.times.append(time.monotonic())
        if len(self.times) <= self.failures:
            return DeliveryResult(DeliveryStatus.RETRY, 500)
        self.done.set()
        return DeliveryResult(DeliveryStatus.SUCCESS, 200)


def service(broker: MemoryPubSub, wrap: bool = False) -> PubSubService:
    inner = pubsub_policy_wrapper([resiliency()])("pubsub", broker) if wrap else broker
    comp = PubSubComponent("pubsub", inner, "pubsub.in-memory", TopicScopes.from_metadata({}))
    return PubSubService([comp], app_id="app")


async def test_an_open_inbound_breaker_holds_deliveries_for_its_timeout() -> None:
    svc = service(MemoryPubSub(group="app", redeliver_delay=0.01))
    target = TimedTarget(failures=3)
    subscriber = Subscriber(svc, target, resiliencies=[resiliency()])
    await subscriber.subscribe_all(
        [
            TopicSubscription(
                "pubsub", "orders", (RoutingRule("", "/orders"),), SubscriptionType.PROGRAMMATIC
            )
        ]
    )
    await svc.publish(PublishRequest("pubsub", "orders", b"x"))
    await asyncio.wait_for(target.done.wait(), OPEN_FOR + 10)
    await subscriber.stop()
    # Three failures in a row opened the breaker: the app saw nothing until it half-opened.
    assert len(target.times) == 4
    assert target.times[3] - target.times[2] >= OPEN_FOR * 0.9
    assert target.times[2] - target.times[0] < OPEN_FOR


class FlakyBroker(MemoryPubSub):
    def __init__(self) -> None:
        super().__init__(group="app")
        self.publish_calls = 0

    async def publish(self, topic: str, data: bytes, metadata: object) -> None:  # type: ignore[override]
        self.publish_calls += 1
        if self.publish_calls <= 2:
            raise ConnectionError("broker restarting")
        await super().publish(topic, data, metadata)  # type: ignore[arg-type]


async def test_publish_is_retried_under_the_outbound_policy() -> None:
    broker = FlakyBroker()
    svc = service(broker, wrap=True)
    await svc.publish(PublishRequest("pubsub", "orders", b"x"))
    assert broker.publish_calls == 3
