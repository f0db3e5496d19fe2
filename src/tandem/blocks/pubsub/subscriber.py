"""The subscriber core: broker message in, routed delivery out, outcome back to the broker.

For each message: read it as a CloudEvent (synthetic for raw payloads), drop it when
expired, pick the route (CEL rules), deliver through the :class:`DeliveryTarget` and retry
per the subscription's :class:`RetryPlan` (retries come only from a Resiliency policy).
When the app answers DROP, has no such route, no rule matches or the event expired, the
message goes to the subscription's dead-letter topic (same pubsub) if it has one, else it
is dropped with a log line. When delivery fails and no retry is left, it goes to the
dead-letter topic, or without one back to the broker, which redelivers it later (Dapr's
rule). If the dead-letter publish fails, or the runtime is stopping mid-retry, the broker
gets RETRY too (at-least-once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.trace import SpanKind

from tandem.blocks.app_health import AppHealth
from tandem.blocks.pubsub import bulk, cloudevents
from tandem.blocks.pubsub.broker import Message, Outcome, SubscribeOptions, SubscriptionHandle
from tandem.blocks.pubsub.delivery import Delivery, DeliveryStatus, DeliveryTarget
from tandem.blocks.pubsub.retry import RetryPlan, plan_for
from tandem.blocks.pubsub.routing import RouteError, Routes
from tandem.blocks.pubsub.service import PubSubService
from tandem.blocks.pubsub.subscriptions import TopicSubscription
from tandem.blocks.resiliency import CircuitBreaker, CircuitOpenError
from tandem.observability.tracing import messaging_attributes, parent_context, traceparent_of
from tandem.resources import Resiliency
from tandem.resources.resiliency import component_policy

log = logging.getLogger("tandem.pubsub")


@dataclass(slots=True)
class _Active:
    sub: TopicSubscription
    routes: Routes
    plan: RetryPlan
    raw: bool
    handle: SubscriptionHandle | None = None
    bulk: DeliveryTarget | None = None  # a bulk subscription's batcher (bulk.py)
    breaker: CircuitBreaker | None = None  # the component's inbound circuit breaker


class Subscriber:
    def __init__(
        self,
        service: PubSubService,
        target: DeliveryTarget,
        *,
        resiliencies: Sequence[Resiliency] = (),
        app_health: AppHealth | None = None,
    ) -> None:
        self._service = service
        self._app_health = app_health  # --enable-app-health-check
        self._target = target
        self._resiliencies = tuple(resiliencies)
        self._active: list[_Active] = []
        self._stopping = asyncio.Event()
        # One inbound breaker per pubsub component, shared by its subscriptions.
        self._breakers: dict[str, CircuitBreaker | None] = {}

    @property
    def subscriptions(self) -> list[TopicSubscription]:
        return [a.sub for a in self._active]

    @property
    def has_pubsubs(self) -> bool:
        return bool(self._service.components)

    async def reconcile(
        self,
        desired: Sequence[TopicSubscription],
        *,
        renewed: frozenset[str] = frozenset(),
        resiliencies: Sequence[Resiliency] | None = None,
    ) -> list[TopicSubscription]:
        """Hot reload: end the subscriptions not in ``desired`` or on a pubsub in
        ``renewed`` (its component was replaced), start the missing ones, and with
        ``resiliencies`` re-derive every retry plan and inbound breaker. Returns the
        subscriptions running afterwards."""
        if resiliencies is not None and tuple(resiliencies) != self._resiliencies:
            self._resiliencies = tuple(resiliencies)
            self._breakers.clear()
            renewed = renewed | {a.sub.pubsub_name for a in self._active}
        wanted = list(desired)
        keep: list[_Active] = []
        ending: list[_Active] = []
        for active in self._active:
            fresh = active.sub in wanted and active.sub.pubsub_name not in renewed
            (keep if fresh else ending).append(active)
        for name in renewed:
            self._breakers.pop(name, None)
        self._active = keep
        # In-flight deliveries of an ended subscription finish (or go back to the broker).
        await asyncio.gather(
            *(a.handle.close() for a in ending if a.handle is not None), return_exceptions=True
        )
        running = [a.sub for a in keep]
        await self.subscribe_all([s for s in wanted if s not in running])
        return self.subscriptions

    async def subscribe_all(self, subs: Sequence[TopicSubscription]) -> list[TopicSubscription]:
        """Start every subscription that is valid and allowed; returns those started."""
        started = []
        for sub in subs:
            active = self._prepare(sub)
            if active is None:
                continue
            comp = self._service.components[sub.pubsub_name]

            async def handler(msg: Message, active: _Active = active) -> Outcome:
                return await self.handle(active, msg)

            try:
                active.handle = await comp.broker.subscribe(
                    sub.topic, handler, SubscribeOptions(metadata=bulk.subscribe_metadata(sub))
                )
            except Exception as exc:
                log.error("subscribing to %s/%s failed: %s", sub.pubsub_name, sub.topic, exc)
                continue
            self._active.append(active)
            started.append(sub)
            log.info(
                "subscribed",
                extra={"pubsub": sub.pubsub_name, "topic": sub.topic, "type": sub.type.value},
            )
        return started

    def _prepare(self, sub: TopicSubscription) -> _Active | None:
        comp = self._service.components.get(sub.pubsub_name)
        if comp is None:
            log.warning(
                "subscription to %s/%s skipped: no pubsub component named %s",
                sub.pubsub_name,
                sub.topic,
                sub.pubsub_name,
            )
            return None
        if not comp.scopes.may_subscribe(self._service.app_id, sub.topic):
            log.info(
                "subscription to %s/%s skipped: the topic is not in this app's scopes",
                sub.pubsub_name,
                sub.topic,
            )
            return None
        try:
            routes = Routes.compile(sub.rules)
            raw = cloudevents.is_raw_payload(sub.metadata)
        except (RouteError, cloudevents.EnvelopeError) as exc:
            log.error("subscription to %s/%s skipped: %s", sub.pubsub_name, sub.topic, exc)
            return None
        plan = plan_for(sub.pubsub_name, self._resiliencies)
        if sub.pubsub_name not in self._breakers:
            policy = component_policy(self._resiliencies, sub.pubsub_name, "inbound", "Pubsub")
            cb = policy.circuit_breaker
            metrics = self._service.metrics
            self._breakers[sub.pubsub_name] = (
                CircuitBreaker(
                    cb,
                    f"deliveries from {sub.pubsub_name}",
                    on_open=functools.partial(
                        metrics.resiliency_activation,
                        "inbound",
                        f"component_{sub.pubsub_name}",
                        "circuitbreaker",
                    ),
                )
                if cb
                else None
            )
        return _Active(
            sub,
            routes,
            plan,
            raw,
            bulk=bulk.batcher_for(self._target, sub),
            breaker=self._breakers[sub.pubsub_name],
        )

    async def handle(self, active: _Active, msg: Message) -> Outcome:
        sub = active.sub
        event, body = cloudevents.read_message(
            msg.data, topic=sub.topic, pubsub_name=sub.pubsub_name, raw=active.raw
        )
        if cloudevents.expired(event):
            return await self._dead_letter(active, msg, "the event expired (ttlInSeconds)")
        path = active.routes.path_for(event)
        if path is None:
            return await self._dead_letter(active, msg, "no routing rule matched")
        delivery = Delivery(
            pubsub_name=sub.pubsub_name,
            topic=sub.topic,
            path=path,
            event=event,
            body=body,
            content_type=cloudevents.CLOUDEVENT_CONTENT_TYPE,
            metadata=msg.metadata,
            traceparent=str(event.get("traceparent") or ""),
            tracestate=str(event.get("tracestate") or ""),
        )
        start = time.perf_counter()
        outcome = await self._traced_delivery(active, msg, delivery)
        # Dapr's process_status: success, retry or drop (dead-lettered counts as drop).
        status = {Outcome.SUCCESS: "success", Outcome.RETRY: "retry"}.get(outcome, "drop")
        elapsed = (time.perf_counter() - start) * 1000
        self._service.metrics.ingress(sub.pubsub_name, sub.topic, status, elapsed)
        return outcome

    async def _traced_delivery(self, active: _Active, msg: Message, delivery: Delivery) -> Outcome:
        sub = active.sub
        tracing = self._service.tracing
        if not tracing.enabled:
            return await self._deliver(active, msg, delivery)
        # The delivery span continues the publisher's trace (carried in the event).
        parent = (
            parent_context(delivery.traceparent, delivery.tracestate)
            if delivery.traceparent
            else None
        )
        comp = self._service.components[sub.pubsub_name]
        attrs = messaging_attributes(sub.pubsub_name, comp.type, sub.topic, "process")
        with tracing.span(f"process {sub.topic}", SpanKind.CONSUMER, attrs, parent) as span:
            delivery = dataclasses.replace(
                delivery, traceparent=traceparent_of(span), traceparent_is_span=True
            )
            return await self._deliver(active, msg, delivery)

    async def _deliver(self, active: _Active, msg: Message, delivery: Delivery) -> Outcome:
        sub = active.sub
        path = delivery.path
        plan = active.plan
        target = active.bulk or self._target
        retries = 0
        while True:
            if not await self._wait_for_app() or not await self._wait_for_breaker(active):
                return Outcome.RETRY  # stopping while the app is unhealthy or the breaker open
            result = await target.deliver(delivery, plan.timeout)
            if active.breaker is not None:
                active.breaker.record(result.status is not DeliveryStatus.RETRY)
            if result.status is DeliveryStatus.SUCCESS:
                return Outcome.SUCCESS
            if result.status is DeliveryStatus.DROP:
                return await self._dead_letter(active, msg, result.detail, warn=True)
            if result.status is DeliveryStatus.NOT_FOUND:
                return await self._dead_letter(active, msg, f"{result.detail} ({path})")
            if self._stopping.is_set():
                return Outcome.RETRY  # give it back; another instance or the next start retries
            if not plan.retries_status(result.http_status) or not plan.allows(retries):
                reason = f"delivery failed after {retries} retries: {result.detail}"
                if sub.dead_letter_topic:
                    return await self._dead_letter(active, msg, reason)
                log.warning(
                    "event %s on %s/%s left to the component's redelivery: %s",
                    msg.id,
                    sub.pubsub_name,
                    sub.topic,
                    reason,
                )
                return Outcome.RETRY
            retries += 1
            self._service.metrics.resiliency_activation(
                "inbound", f"component_{sub.pubsub_name}", "retry"
            )
            try:
                await asyncio.wait_for(self._stopping.wait(), plan.delay(retries))
                return Outcome.RETRY  # stopping while waiting to retry
            except TimeoutError:
                pass

    async def _wait_for_breaker(self, active: _Active) -> bool:
        """Holds a delivery while the breaker is open (the app is not called for its
        ``timeout``); False if the runtime stops first."""
        breaker = active.breaker
        while breaker is not None:
            try:
                breaker.before()
                return True
            except CircuitOpenError:
                # Half-open with its probes out: check again shortly.
                wait = breaker.reopens_in() or 0.05
                try:
                    await asyncio.wait_for(self._stopping.wait(), wait)
                    return False
                except TimeoutError:
                    pass
        return True

    async def _wait_for_app(self) -> bool:
        """Holds a delivery while the app is unhealthy; False if the runtime stops first."""
        if self._app_health is None or self._app_health.healthy:
            return True
        healthy = asyncio.ensure_future(self._app_health.wait_healthy())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait((healthy, stopping), return_when=asyncio.FIRST_COMPLETED)
        healthy.cancel()
        stopping.cancel()
        return not self._stopping.is_set()

    async def _dead_letter(
        self, active: _Active, msg: Message, reason: str, *, warn: bool = False
    ) -> Outcome:
        sub = active.sub
        dlq = sub.dead_letter_topic
        where = f"{sub.pubsub_name}/{sub.topic}"
        if not dlq:
            (log.warning if warn else log.error)(
                "event %s on %s dropped: %s", msg.id, where, reason
            )
            return Outcome.DROP
        try:
            await self._service.forward(sub.pubsub_name, dlq, msg.data, msg.metadata)
        except Exception as exc:
            log.error("dead-lettering event %s from %s failed, will retry: %s", msg.id, where, exc)
            return Outcome.RETRY
        log.warning("event %s on %s sent to dead-letter topic %s: %s", msg.id, where, dlq, reason)
        return Outcome.DROP

    async def stop(self, grace: float = 5.0) -> None:
        """Stop fetching; let deliveries in flight finish (up to ``grace``), give back the rest."""
        self._stopping.set()
        active, self._active = self._active, []
        await asyncio.gather(
            *(a.handle.close(grace) for a in active if a.handle is not None),
            return_exceptions=True,
        )
