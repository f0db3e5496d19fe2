"""Dapr's publish API semantics, shared by the HTTP and gRPC front doors.

Resolves the component (with Dapr's errors), enforces topic scopes, builds the CloudEvent
envelope and hands bytes to the broker; any broker failure becomes Dapr's 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from opentelemetry.trace import SpanKind

from tandem.blocks.errors import DaprError, ErrorInfo
from tandem.blocks.pubsub import cloudevents, tracecontext
from tandem.blocks.pubsub.broker import Feature, PublishEntry, PubSub
from tandem.blocks.pubsub.scopes import TopicScopes
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.observability.tracing import (
    NO_TRACING,
    Tracing,
    messaging_attributes,
    traceparent_of,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PubSubComponent:
    name: str
    broker: PubSub
    type: str = ""
    scopes: TopicScopes = field(default_factory=TopicScopes)
    version: str = "v1"


@dataclass(frozen=True, slots=True)
class PublishRequest:
    pubsub: str
    topic: str
    data: bytes
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    traceparent: str = ""
    tracestate: str = ""


@dataclass(frozen=True, slots=True)
class BulkEntry:
    entry_id: str
    data: bytes
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FailedEntry:
    entry_id: str
    error: str


def _info(reason: str, name: str = "") -> ErrorInfo:
    return ErrorInfo(reason=reason, resource_type="pubsub", resource_name=name)


def component_of(spec: ComponentSpec, broker: PubSub) -> PubSubComponent:
    return PubSubComponent(
        spec.name, broker, spec.type, TopicScopes.from_metadata(spec.metadata), spec.version
    )


class PubSubService:
    def __init__(self, components: Iterable[PubSubComponent], app_id: str) -> None:
        self.tracing: Tracing = NO_TRACING
        self.metrics: RuntimeMetrics = NO_METRICS
        self._components = {c.name: c for c in components}
        self.app_id = app_id

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[ComponentSpec],
        ctx: ComponentContext,
        wrap: Callable[[str, PubSub], PubSub] | None = None,
    ) -> PubSubService:
        """``wrap`` puts each broker behind its outbound Resiliency policy."""
        components = []
        for spec in specs:
            if not spec.type.startswith("pubsub."):
                continue
            broker = cast(PubSub, create_component(spec, ctx))
            if wrap is not None:
                broker = wrap(spec.name, broker)
            components.append(component_of(spec, broker))
        return cls(components, ctx.app_id)

    @property
    def components(self) -> Mapping[str, PubSubComponent]:
        return self._components

    def set_component(self, name: str, comp: PubSubComponent | None) -> PubSubComponent | None:
        """Hot reload: add, replace (``comp``) or remove (None) a component; returns the
        previous one, which the caller closes once the calls holding it are done."""
        previous = self._components.pop(name, None)
        if comp is not None:
            self._components[name] = comp
        return previous

    def features(self, name: str) -> frozenset[Feature]:
        return self.component(name).broker.features

    def component(self, name: str) -> PubSubComponent:
        if not name:
            raise DaprError(
                "ERR_PUBSUB_EMPTY", "pubsub name is empty", info=_info("DAPR_PUBSUB_NAME_EMPTY")
            )
        found = self._components.get(name)
        if found is not None:
            return found
        if not self._components:
            raise DaprError(
                "ERR_PUBSUB_NOT_CONFIGURED",
                "no pubsub is configured",
                info=_info("DAPR_PUBSUB_NOT_CONFIGURED"),
            )
        raise DaprError(
            "ERR_PUBSUB_NOT_FOUND",
            f"pubsub {name} is not found",
            info=_info("DAPR_PUBSUB_NOT_FOUND", name),
        )

    def target(self, pubsub: str, topic: str) -> PubSubComponent:
        """The component for a publish to ``topic``, after name, topic and scope checks."""
        comp = self.component(pubsub)
        if not topic:
            raise DaprError(
                "ERR_TOPIC_NAME_EMPTY",
                f"topic is empty in pubsub {pubsub}",
                info=_info("DAPR_PUBSUB_TOPIC_NAME_EMPTY", pubsub),
            )
        if not comp.scopes.may_publish(self.app_id, topic):
            raise DaprError(
                "ERR_PUBSUB_FORBIDDEN",
                f"topic {topic} is not allowed for app id {self.app_id}",
                info=_info("DAPR_PUBSUB_FORBIDDEN", pubsub),
            )
        return comp

    def event_bytes(
        self,
        pubsub: str,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str],
        traceparent: str,
        tracestate: str,
    ) -> bytes:
        """What goes to the broker: ``data`` itself for raw payloads, else the envelope."""
        try:
            if cloudevents.is_raw_payload(metadata):
                return data
            event = cloudevents.envelope(
                data,
                content_type=content_type,
                topic=topic,
                pubsub_name=pubsub,
                source=self.app_id,
                metadata=metadata,
                traceparent=traceparent or tracecontext.new(),
                tracestate=tracestate,
            )
        except cloudevents.InvalidCloudEvent as exc:
            raise DaprError(
                "ERR_PUBSUB_CLOUD_EVENTS_SER",
                f"cannot create cloudevent: {exc}",
                info=_info("DAPR_PUBSUB_CLOUD_EVENT_CREATION", pubsub),
            ) from None
        except cloudevents.MetadataError as exc:
            raise DaprError(
                "ERR_PUBSUB_REQUEST_METADATA",
                f"failed deserializing metadata: {exc}",
                info=_info("DAPR_PUBSUB_METADATA_DESERIALIZATION", pubsub),
            ) from None
        return cloudevents.encode(event)

    async def publish(self, req: PublishRequest) -> None:
        comp = self.target(req.pubsub, req.topic)
        attrs = messaging_attributes(req.pubsub, comp.type, req.topic, "publish")
        start = time.perf_counter()
        ok = False
        try:
            with self.tracing.span(f"publish {req.topic}", SpanKind.PRODUCER, attrs) as span:
                await self._publish(comp, req, traceparent_of(span) or req.traceparent)
            ok = True
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            self.metrics.egress(req.pubsub, req.topic, ok, elapsed)

    async def _publish(self, comp: PubSubComponent, req: PublishRequest, traceparent: str) -> None:
        data = self.event_bytes(
            req.pubsub,
            req.topic,
            req.data,
            req.content_type,
            req.metadata,
            traceparent,
            req.tracestate,
        )
        try:
            await comp.broker.publish(req.topic, data, _broker_metadata(req.metadata))
        except Exception as exc:
            log.warning("publish to %s/%s failed: %s", req.pubsub, req.topic, exc)
            raise DaprError(
                "ERR_PUBSUB_PUBLISH_MESSAGE",
                f"error when publish to topic {req.topic} in pubsub {req.pubsub}: {exc}",
                info=_info("DAPR_PUBSUB_PUBLISH_MESSAGE", req.pubsub),
            ) from exc

    async def bulk_publish(
        self,
        pubsub: str,
        topic: str,
        entries: Sequence[BulkEntry],
        metadata: Mapping[str, str] | None = None,
        traceparent: str = "",
        tracestate: str = "",
    ) -> list[FailedEntry]:
        """Publish every entry; returns the entries that failed (empty: all published)."""
        comp = self.target(pubsub, topic)
        attrs = messaging_attributes(pubsub, comp.type, topic, "publish")
        start = time.perf_counter()
        with self.tracing.span(f"publish {topic}", SpanKind.PRODUCER, attrs) as span:
            # With tracing on, each event carries the publish span itself (the subscriber's
            # delivery spans are its children); otherwise a child id of the caller's context.
            span_parent = traceparent_of(span)
            failed = await self._bulk_publish(
                comp,
                pubsub,
                topic,
                entries,
                metadata,
                span_parent or traceparent,
                tracestate,
                derive=not span_parent,
            )
        self.metrics.egress(pubsub, topic, not failed, (time.perf_counter() - start) * 1000)
        return failed

    async def _bulk_publish(
        self,
        comp: PubSubComponent,
        pubsub: str,
        topic: str,
        entries: Sequence[BulkEntry],
        metadata: Mapping[str, str] | None,
        traceparent: str,
        tracestate: str,
        *,
        derive: bool,
    ) -> list[FailedEntry]:
        seen: set[str] = set()
        for e in entries:
            if not e.entry_id or e.entry_id in seen:
                what = "missing" if not e.entry_id else f"duplicate ({e.entry_id})"
                raise DaprError(
                    "ERR_PUBSUB_EVENTS_SER",
                    f"entryId is {what}: every entry needs a unique entryId",
                    info=_info("DAPR_PUBSUB_MARSHAL_EVENTS", pubsub),
                )
            seen.add(e.entry_id)
        base = metadata or {}
        out: list[PublishEntry] = []
        for e in entries:
            md = {**base, **e.metadata}
            data = self.event_bytes(
                pubsub,
                topic,
                e.data,
                e.content_type,
                md,
                tracecontext.child(traceparent) if derive and traceparent else traceparent,
                tracestate,
            )
            out.append(PublishEntry(e.entry_id, data, _broker_metadata(md)))
        if not out:
            return []
        try:
            failed = await comp.broker.bulk_publish(topic, out)
        except Exception as exc:
            log.warning("bulk publish to %s/%s failed: %s", pubsub, topic, exc)
            return [FailedEntry(e.entry_id, str(exc)) for e in out]
        return [FailedEntry(i, "failed to publish") for i in failed]

    async def forward(self, pubsub: str, topic: str, data: bytes, md: Mapping[str, str]) -> None:
        """Publish already-encoded bytes (dead letters); no scope check, errors raise."""
        await self.component(pubsub).broker.publish(topic, data, md)

    async def close(self) -> None:
        for comp in self._components.values():
            try:
                await comp.broker.close()
            except Exception:
                log.exception("closing pubsub %s failed", comp.name)


def _broker_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Request metadata the broker keeps with the message (envelope overrides stay out)."""
    return {k: v for k, v in metadata.items() if not k.lower().startswith("cloudevent.")}
