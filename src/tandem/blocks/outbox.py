"""The transactional outbox: a state transaction publishes its upserts exactly when it commits.

A state store whose component metadata sets ``outboxPublishPubsub`` and
``outboxPublishTopic`` publishes, for every transaction, one event per upserted key to that
topic — the stored value as the CloudEvent's data — if and only if the transaction commits
(Dapr's outbox contract). The state service calls :meth:`Outbox.around_transaction` around
each commit (its transaction hook); nothing here knows any store or broker type.

How "exactly when it commits" holds, even when a process dies half way:

1. Before the commit, one *intent* per upsert is published to an internal topic
   (``outboxPubsub``, default the publish pubsub), carrying a fresh marker id and the
   value. If that fails, the transaction is not run: ``ERR_PUBLISH_OUTBOX``.
2. The transaction commits with one more upsert per intent: the marker key. Either the
   user's writes and the markers are stored, or none of them are.
3. A relay consumes the internal topic. An intent whose marker exists is published to the
   user's topic, then its marker is deleted and the intent acknowledged. An intent whose
   transaction failed has no marker and is discarded: at once when this process ran that
   transaction, otherwise once its ``outboxMissingStateTimeout`` (default 60 s) has passed
   (or at once with ``outboxDiscardWhenMissingState: "true"``); until then it is retried,
   since the transaction may still be running in another replica.

The relay of the process that ran the transaction learns its outcome in memory (the
outcome is registered *before* the intents are published, so its relay, which may read an
intent before the commit returns, waits for it instead of finding no marker yet), so it
publishes within moments of the commit. An intent from another replica whose marker is not
there yet is looked up again for a short while before it is left to the internal topic's
redelivery. Closing waits (briefly) until this process's committed events are published,
so an app that exits right after its transaction loses nothing; after a crash the
internal topic redelivers what was not acknowledged.

Delivery is at-least-once: a crash between the publish and the marker delete publishes
the event again, with the same CloudEvent id (the marker id), so consumers can de-duplicate.
An upsert with metadata ``outbox.projection: "true"`` is not stored: its value is what gets
published for the key of the same name in the transaction.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from tandem.blocks.component_metadata import as_bool, as_seconds, lookup
from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.blocks.pubsub.broker import Message, Outcome, SubscribeOptions, SubscriptionHandle
from tandem.blocks.pubsub.service import PublishRequest, PubSubService
from tandem.blocks.state.service import StateComponent, StateService
from tandem.blocks.state.store import DeleteRequest, GetRequest, SetRequest, TransactionOperation

log = logging.getLogger("tandem.outbox")

PUBLISH_PUBSUB = "outboxPublishPubsub"
PUBLISH_TOPIC = "outboxPublishTopic"
INTERNAL_PUBSUB = "outboxPubsub"
DISCARD_WHEN_MISSING = "outboxDiscardWhenMissingState"
MISSING_STATE_TIMEOUT = "outboxMissingStateTimeout"
PROJECTION = "outbox.projection"
CONTENT_TYPE = "contentType"
MARKER_PREFIX = "tandem-outbox-"
_REMEMBERED = 10_000  # outcomes of this process's transactions kept for the relay
# How long the relay keeps looking for the marker of another process's transaction before
# leaving the intent to redelivery (the commit normally follows its intents by milliseconds).
MARKER_WAIT_S = 2.0
DRAIN_S = 3.0  # how long closing waits for this process's committed events to be published

Commit = Callable[[Sequence[TransactionOperation]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    store: str
    pubsub: str
    topic: str
    internal_pubsub: str
    internal_topic: str
    discard_when_missing: bool = False
    missing_state_timeout: float = 60.0

    @classmethod
    def from_metadata(
        cls, store: str, metadata: Mapping[str, str], app_id: str
    ) -> OutboxConfig | None:
        """The store's outbox settings, or None when it has none."""
        pubsub, topic = lookup(metadata, PUBLISH_PUBSUB), lookup(metadata, PUBLISH_TOPIC)
        if not pubsub and not topic:
            return None
        if not pubsub or not topic:
            raise ValueError(
                f"state store {store}: {PUBLISH_PUBSUB} and {PUBLISH_TOPIC} go together"
            )
        return cls(
            store=store,
            pubsub=pubsub,
            topic=topic,
            internal_pubsub=lookup(metadata, INTERNAL_PUBSUB) or pubsub,
            internal_topic=f"{app_id}-{store}-{topic}-outbox",
            discard_when_missing=as_bool(lookup(metadata, DISCARD_WHEN_MISSING)),
            missing_state_timeout=as_seconds(
                MISSING_STATE_TIMEOUT, lookup(metadata, MISSING_STATE_TIMEOUT), 60.0
            ),
        )


@dataclass(frozen=True, slots=True)
class Intent:
    """What step 1 publishes to the internal topic for one upsert."""

    marker: str
    data: bytes
    content_type: str
    published: float  # epoch seconds, when the intent was published

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "marker": self.marker,
                "data": base64.b64encode(self.data).decode(),
                "contentType": self.content_type,
                "published": self.published,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Intent:
        doc = orjson.loads(raw)
        return cls(
            str(doc["marker"]),
            base64.b64decode(doc["data"]),
            str(doc["contentType"]),
            float(doc["published"]),
        )


def content_type_of(value: bytes, metadata: Mapping[str, str]) -> str:
    """``contentType`` from the operation's metadata, else guessed from the value."""
    given = lookup(metadata, CONTENT_TYPE)
    if given:
        return given
    try:
        orjson.loads(value)
        return "application/json"
    except orjson.JSONDecodeError:
        pass
    try:
        value.decode("utf-8")
        return "text/plain"
    except UnicodeDecodeError:
        return "application/octet-stream"


def _outbox_error(config: OutboxConfig, detail: str) -> DaprError:
    return DaprError(
        "ERR_PUBLISH_OUTBOX",
        f"error while publishing outbox message: {detail}",
        info=ErrorInfo("DAPR_PUBLISH_OUTBOX", resource_type="state", resource_name=config.store),
    )


def split_projections(
    ops: Sequence[TransactionOperation],
) -> tuple[list[TransactionOperation], list[SetRequest]]:
    """(the operations to store, the upserts to publish: projections replace by key)."""
    stored: list[TransactionOperation] = []
    projections: dict[str, SetRequest] = {}
    for op in ops:
        if isinstance(op, SetRequest) and as_bool(lookup(op.metadata, PROJECTION)):
            projections[op.key] = op
        else:
            stored.append(op)
    published = [projections.get(op.key, op) for op in stored if isinstance(op, SetRequest)]
    return stored, published


class Outbox:
    def __init__(
        self,
        state: StateService,
        pubsub: PubSubService,
        configs: Mapping[str, OutboxConfig],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._pubsub = pubsub
        self._configs = dict(configs)
        self._clock = clock
        # marker → committed? for this process's transactions (recent ones only).
        self._outcomes: OrderedDict[str, asyncio.Future[bool]] = OrderedDict()
        self._handles: list[SubscriptionHandle] = []
        # Markers of this process's committed transactions whose events are not yet out.
        self._unpublished: set[str] = set()
        self.published = 0
        self.discarded = 0
        self.changed = asyncio.Event()

    @property
    def configs(self) -> Mapping[str, OutboxConfig]:
        return self._configs

    def check(self) -> None:
        """Every outbox names configured pubsubs (a startup error otherwise)."""
        for c in self._configs.values():
            for name in {c.pubsub, c.internal_pubsub}:
                if name not in self._pubsub.components:
                    raise ValueError(
                        f"state store {c.store}: outbox pubsub {name!r} is not a configured pubsub"
                    )

    async def start(self) -> None:
        """Start relaying every store's intents (a relay per store, in the app's group)."""
        for config in self._configs.values():
            broker = self._pubsub.component(config.internal_pubsub).broker

            async def relay(msg: Message, config: OutboxConfig = config) -> Outcome:
                return await self._relay(config, msg)

            self._handles.append(
                await broker.subscribe(config.internal_topic, relay, SubscribeOptions())
            )

    async def around_transaction(
        self,
        comp: StateComponent,
        ops: Sequence[TransactionOperation],
        metadata: Mapping[str, str],
        commit: Commit,
    ) -> None:
        """The state service's transaction hook: publish intents, then commit with markers."""
        config = self._configs.get(comp.name)
        if config is None:
            await commit(ops)
            return
        stored, upserts = split_projections(ops)
        try:
            self._pubsub.target(config.pubsub, config.topic)  # scopes, before anything runs
        except DaprError as err:
            raise _outbox_error(config, err.message) from None
        now = self._clock()
        intents = [
            Intent(uuid.uuid4().hex, op.value, content_type_of(op.value, op.metadata), now)
            for op in upserts
        ]
        # Registered before publishing: this process's relay may read an intent before the
        # commit below returns, and must then wait for the outcome, not miss the marker.
        loop = asyncio.get_running_loop()
        outcomes = [self._remember(i.marker, loop.create_future()) for i in intents]
        committed = False
        try:
            results = await asyncio.gather(
                *(
                    self._pubsub.forward(
                        config.internal_pubsub, config.internal_topic, i.encode(), {}
                    )
                    for i in intents
                ),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise _outbox_error(config, str(failed[0]))
            markers = [
                SetRequest(key=comp.keys.stored(self._key(i.marker)), value=b"1") for i in intents
            ]
            await commit([*stored, *markers])
            committed = True
            self._unpublished.update(i.marker for i in intents)
        finally:
            for fut in outcomes:
                if not fut.done():
                    fut.set_result(committed)

    @staticmethod
    def _key(marker: str) -> str:
        return MARKER_PREFIX + marker

    def _remember(self, marker: str, fut: asyncio.Future[bool]) -> asyncio.Future[bool]:
        self._outcomes[marker] = fut
        while len(self._outcomes) > _REMEMBERED:
            self._outcomes.popitem(last=False)
        return fut

    async def _relay(self, config: OutboxConfig, msg: Message) -> Outcome:
        try:
            intent = Intent.decode(msg.data)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.error(
                "outbox message %s on %s is unreadable, dropped: %s", msg.id, config.store, exc
            )
            return self._discard()
        local = self._outcomes.get(intent.marker)
        if local is not None and not await asyncio.shield(local):
            self._outcomes.pop(intent.marker, None)
            return self._discard()  # this process saw the transaction fail
        comp = self._state.components[config.store]
        key = comp.keys.stored(self._key(intent.marker))
        if not await self._marker_exists(comp, key, wait=local is None):
            waited = self._clock() - intent.published
            if config.discard_when_missing or waited >= config.missing_state_timeout:
                log.info("outbox event %s discarded: its transaction did not commit", intent.marker)
                return self._discard()
            log.info(
                "outbox event %s on %s: no commit seen yet, left to redelivery",
                intent.marker,
                config.store,
            )
            return Outcome.RETRY  # the transaction may still be running elsewhere
        try:
            await self._pubsub.publish(
                PublishRequest(
                    config.pubsub,
                    config.topic,
                    intent.data,
                    intent.content_type,
                    metadata={"cloudevent.id": intent.marker},
                )
            )
        except DaprError as err:
            log.warning(
                "outbox publish to %s/%s failed, will retry: %s", config.pubsub, config.topic, err
            )
            return Outcome.RETRY
        try:
            await comp.store.delete(DeleteRequest(key))
        except Exception as exc:  # published; a leftover marker only means a duplicate later
            log.warning("outbox marker %s not deleted: %s", intent.marker, exc)
        self._outcomes.pop(intent.marker, None)
        self._unpublished.discard(intent.marker)
        self.published += 1
        self.changed.set()
        return Outcome.SUCCESS

    @staticmethod
    async def _marker_exists(comp: StateComponent, key: str, *, wait: bool) -> bool:
        """Whether the marker is stored; with ``wait``, looks again for a short while (the
        transaction of another process may commit just after its intents arrive)."""
        deadline = time.monotonic() + (MARKER_WAIT_S if wait else 0.0)
        pause = 0.01
        while True:
            if (await comp.store.get(GetRequest(key))).data is not None:
                return True
            if time.monotonic() + pause > deadline:
                return False
            await asyncio.sleep(pause)  # polling the store, bounded by the deadline
            pause = min(pause * 2, 0.25)

    def _discard(self) -> Outcome:
        self.discarded += 1
        self.changed.set()
        return Outcome.DROP

    async def drain(self, timeout: float = DRAIN_S) -> bool:
        """Wait until this process's committed events are published (True), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._unpublished:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return not self._unpublished
        return True

    async def close(self) -> None:
        if not await self.drain():
            log.warning(
                "outbox: %d committed event(s) not yet published at shutdown; they stay "
                "queued and are published when this app id runs again",
                len(self._unpublished),
            )
        handles, self._handles = self._handles, []
        await asyncio.gather(*(h.close() for h in handles), return_exceptions=True)


def configs_from(
    specs: Sequence[tuple[str, Mapping[str, str]]], app_id: str
) -> dict[str, OutboxConfig]:
    """(store name, metadata) of each state component → the outbox configs among them."""
    out = {}
    for name, metadata in specs:
        config = OutboxConfig.from_metadata(name, metadata, app_id)
        if config is not None:
            out[name] = config
    return out
