"""Streaming subscriptions: an app subscribes over a gRPC stream, with no app port.

The gRPC door (``SubscribeTopicEventsAlpha1``) opens a :class:`StreamSession` with the
first message of the stream, then sends every event the session yields and hands back each
answer (``event_processed``) by event id. Underneath, a session is one ordinary
:class:`~tandem.blocks.pubsub.subscriber.Subscriber` whose delivery target is the stream,
so retries, resiliency policies, TTL expiry and dead letters work as for an app port.

Invariants:
- One streaming subscription per (pubsub, topic) at a time in a runtime (Dapr's rule); a
  second one waits briefly for the first to end (a client reconnecting), then is refused.
- Closing the stream ends the subscription: events sent and not yet answered are handed
  back to the broker unacknowledged, so they are delivered again (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import grpc

from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.blocks.pubsub import cloudevents
from tandem.blocks.pubsub.delivery import Delivery, DeliveryResult, DeliveryStatus
from tandem.blocks.pubsub.service import PubSubService
from tandem.blocks.pubsub.subscriber import Subscriber
from tandem.blocks.pubsub.subscriptions import SubscriptionType, TopicSubscription
from tandem.resources import Resiliency, RoutingRule

log = logging.getLogger("tandem.pubsub")

# How long a new stream for a (pubsub, topic) already streamed waits for the old one to end.
REPLACE_WAIT = 3.0


class StreamTarget:
    """A :class:`~tandem.blocks.pubsub.delivery.DeliveryTarget` over one stream: a delivery
    waits in :meth:`next` for the door to send it, then for :meth:`answer` with its id."""

    def __init__(self) -> None:
        self._outgoing: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._waiting: dict[str, deque[asyncio.Future[DeliveryStatus]]] = {}
        self._closed = False

    async def deliver(self, delivery: Delivery, timeout: float | None) -> DeliveryResult:
        if self._closed:
            return DeliveryResult(DeliveryStatus.RETRY, None, "the stream is closed")
        event_id = str(delivery.event.get("id", ""))
        answer: asyncio.Future[DeliveryStatus] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(event_id, deque())
        waiting.append(answer)
        self._outgoing.put_nowait(delivery)
        try:
            status = await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return DeliveryResult(DeliveryStatus.RETRY, None, f"no answer within {timeout}s")
        finally:
            if answer in waiting:
                waiting.remove(answer)
            if not waiting:
                self._waiting.pop(event_id, None)
        detail = {DeliveryStatus.DROP: "the app answered DROP", DeliveryStatus.RETRY: "RETRY"}
        return DeliveryResult(status, None, detail.get(status, ""))

    def answer(self, event_id: str, status: DeliveryStatus) -> bool:
        """Settle the oldest delivery of ``event_id`` still waiting; False when none is."""
        for fut in self._waiting.get(event_id, ()):
            if not fut.done():
                fut.set_result(status)
                return True
        return False

    async def next(self) -> Delivery | None:
        """The next delivery to send, or None once the stream is closed."""
        if self._closed:
            return None
        return await self._outgoing.get()

    def close(self) -> None:
        self._closed = True
        self._outgoing.put_nowait(None)


class StreamSession:
    def __init__(
        self,
        owner: StreamingSubscriptions,
        sub: TopicSubscription,
        subscriber: Subscriber,
        target: StreamTarget,
    ) -> None:
        self.subscription = sub
        self._owner = owner
        self._subscriber = subscriber
        self.target = target
        self.ended = asyncio.Event()

    async def next(self) -> Delivery | None:
        return await self.target.next()

    def answer(self, event_id: str, status: DeliveryStatus) -> None:
        if not self.target.answer(event_id, status):
            log.debug("answer for event %s that is not waiting (late or unknown)", event_id)

    def hang_up(self) -> None:
        """The client stopped sending: no more events go out (:meth:`next` returns None)."""
        self.target.close()

    async def close(self) -> None:
        """End the subscription; unanswered events go back to the broker."""
        if self.ended.is_set():
            return
        self.target.close()
        try:
            await self._subscriber.stop(grace=0)
        finally:
            self._owner._ended(self)
            self.ended.set()


class StreamingSubscriptions:
    """The runtime's streaming subscriptions; ``on_change`` gets the list after each change."""

    def __init__(
        self,
        service: PubSubService,
        *,
        resiliencies: Sequence[Resiliency] = (),
        on_change: Callable[[list[TopicSubscription]], None] | None = None,
    ) -> None:
        self._service = service
        self._resiliencies = tuple(resiliencies)
        self._sessions: dict[tuple[str, str], StreamSession] = {}
        self.on_change = on_change

    @property
    def subscriptions(self) -> list[TopicSubscription]:
        return [s.subscription for s in self._sessions.values()]

    async def open(
        self,
        pubsub: str,
        topic: str,
        metadata: Mapping[str, str] | None = None,
        dead_letter_topic: str | None = None,
    ) -> StreamSession:
        comp = self._service.component(pubsub)
        if not topic:
            raise DaprError(
                "ERR_TOPIC_NAME_EMPTY",
                f"topic is empty in pubsub {pubsub}",
                info=ErrorInfo("DAPR_PUBSUB_TOPIC_NAME_EMPTY", resource_type="pubsub"),
            )
        if not comp.scopes.may_subscribe(self._service.app_id, topic):
            raise DaprError(
                "ERR_PUBSUB_FORBIDDEN",
                f"topic {topic} is not allowed for app id {self._service.app_id}",
                info=ErrorInfo("DAPR_PUBSUB_FORBIDDEN", resource_type="pubsub"),
            )
        md = dict(metadata or {})
        try:
            cloudevents.is_raw_payload(md)
        except cloudevents.MetadataError as exc:
            raise DaprError("ERR_PUBSUB_REQUEST_METADATA", str(exc)) from None
        await self._wait_for_previous((pubsub, topic))
        sub = TopicSubscription(
            pubsub_name=pubsub,
            topic=topic,
            rules=(RoutingRule("", ""),),
            type=SubscriptionType.STREAMING,
            dead_letter_topic=dead_letter_topic or None,
            metadata=md,
        )
        target = StreamTarget()
        subscriber = Subscriber(self._service, target, resiliencies=self._resiliencies)
        session = StreamSession(self, sub, subscriber, target)
        self._sessions[sub.key] = session  # reserved before the broker call (no twin)
        try:
            started = await subscriber.subscribe_all([sub])
        except BaseException:
            self._sessions.pop(sub.key, None)
            raise
        if not started:
            self._sessions.pop(sub.key, None)
            raise DaprError(
                "ERR_INTERNAL", f"subscribing to {pubsub}/{topic} failed (see the runtime log)"
            )
        log.info("streaming subscription opened", extra={"pubsub": pubsub, "topic": topic})
        self._changed()
        return session

    async def _wait_for_previous(self, key: tuple[str, str]) -> None:
        previous = self._sessions.get(key)
        if previous is None:
            return
        try:
            await asyncio.wait_for(previous.ended.wait(), REPLACE_WAIT)
        except TimeoutError:
            raise DaprError(
                "ERR_BAD_REQUEST",
                f"already subscribed to pubsub {key[0]} topic {key[1]} by another stream",
                http_status=409,
                grpc_status=grpc.StatusCode.ALREADY_EXISTS,
            ) from None
        if key in self._sessions:  # another new stream took the place meanwhile
            await self._wait_for_previous(key)

    def _ended(self, session: StreamSession) -> None:
        key = session.subscription.key
        if self._sessions.get(key) is session:
            del self._sessions[key]
            log.info("streaming subscription closed", extra={"pubsub": key[0], "topic": key[1]})
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.subscriptions)

    async def end(self, pubsubs: frozenset[str]) -> None:
        """Hot reload: end the streams on these (replaced or removed) pubsubs; their clients
        see the stream close and subscribe again."""
        ending = [s for s in self._sessions.values() if s.subscription.pubsub_name in pubsubs]
        await asyncio.gather(*(s.close() for s in ending), return_exceptions=True)

    async def close(self) -> None:
        await asyncio.gather(
            *(s.close() for s in list(self._sessions.values())), return_exceptions=True
        )
