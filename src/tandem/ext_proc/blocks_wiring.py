"""Which block gets which components, and which HTTP routes and gRPC RPCs each block adds."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tandem.blocks.app_channel import APP_API_TOKEN_ENV, AppChannel
from tandem.blocks.health import Health
from tandem.blocks.metadata import ComponentInfo, MetadataService, SubscriptionInfo
from tandem.blocks.pubsub.app_subscriptions import start_app_subscriptions
from tandem.blocks.pubsub.http_delivery import HttpDelivery
from tandem.blocks.pubsub.service import PubSubService
from tandem.blocks.pubsub.subscriber import Subscriber
from tandem.blocks.pubsub.subscriptions import TopicSubscription, from_declarative
from tandem.blocks.registry import ComponentContext, ComponentSpec, known_types
from tandem.blocks.state.service import StateService
from tandem.ext_proc import pubsub_grpc, pubsub_http, state_grpc, state_http
from tandem.ext_proc.router import Router
from tandem.resources import Resiliency, Subscription

log = logging.getLogger("tandem.runtime")

Rpc = Callable[[Any], Awaitable[Any]]

# Building blocks this runtime serves; components of other blocks are skipped with a warning
# so an existing Dapr resources folder (which usually also holds pubsub.yaml) still starts.
SERVED_BLOCKS = frozenset({"state", "pubsub"})


@dataclass(slots=True)
class Wiring:
    rpcs: dict[str, Rpc] = field(default_factory=dict)
    components: list[ComponentInfo] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    pubsub: PubSubService | None = None


def wire_blocks(router: Router, specs: Sequence[ComponentSpec], ctx: ComponentContext) -> Wiring:
    wiring = Wiring()
    served = []
    for spec in specs:
        block = spec.type.split(".", 1)[0]
        if block in SERVED_BLOCKS:
            served.append(spec)
        else:
            log.warning(
                "component skipped: its building block is not served by this runtime yet",
                extra={"component": spec.name, "type": spec.type},
            )
    unknown = [s for s in served if s.type not in known_types()]
    if unknown:
        s = unknown[0]
        known = ", ".join(
            sorted(t for t in known_types() if t.startswith(s.type.split(".")[0] + "."))
        )
        raise ValueError(f"component {s.name}: unknown type {s.type!r} (known: {known})")

    state = StateService.from_specs(served, ctx)
    state_http.register(router, state)
    wiring.rpcs.update(state_grpc.rpcs(state))
    for name, comp in state.components.items():
        caps = tuple(sorted(f.value for f in state.features(name)))
        wiring.components.append(ComponentInfo(name, comp.type, _version(served, name), caps))
    wiring.closers.append(state.close)

    pubsub = PubSubService.from_specs(served, ctx)
    pubsub_http.register(router, pubsub)
    wiring.rpcs.update(pubsub_grpc.rpcs(pubsub))
    for name, ps in pubsub.components.items():
        caps = tuple(sorted(f.value for f in ps.broker.features))
        wiring.components.append(ComponentInfo(name, ps.type, _version(served, name), caps))
    wiring.closers.append(pubsub.close)
    wiring.pubsub = pubsub
    return wiring


def start_app(
    wiring: Wiring,
    *,
    app_id: str,
    port: int,
    protocol: str,
    health: Health,
    metadata: MetadataService,
    subscriptions: Sequence[Subscription] = (),
    resiliencies: Sequence[Resiliency] = (),
) -> Callable[[], Awaitable[None]]:
    """Open the app channel and, in the background, wait for the app and start its
    subscriptions; ``/v1.0/healthz`` reports not ready ("app") until then. Returns the
    stopper, which drains deliveries in flight."""
    channel = AppChannel(port, app_id=app_id, token=os.environ.get(APP_API_TOKEN_ENV))
    health.mark_not_ready("app", outbound=False)
    subscriber = None
    if wiring.pubsub is not None and wiring.pubsub.components:
        if protocol == "http":
            subscriber = Subscriber(wiring.pubsub, HttpDelivery(channel), resiliencies=resiliencies)
        else:
            log.warning("pub/sub delivery to gRPC apps is not supported yet: no subscriptions")

    def ready(started: list[TopicSubscription]) -> None:
        metadata.subscriptions = [
            SubscriptionInfo(
                pubsub_name=s.pubsub_name,
                topic=s.topic,
                rules=tuple((r.match, r.path) for r in s.rules),
                type=s.type.value,
                dead_letter_topic=s.dead_letter_topic or "",
                metadata=dict(s.metadata),
            )
            for s in started
        ]
        health.mark_ready("app")

    declarative = [from_declarative(s) for s in subscriptions]
    task = asyncio.create_task(start_app_subscriptions(channel, subscriber, declarative, ready))

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if subscriber is not None:
            await subscriber.stop()
        await channel.close()

    return stop


def _version(specs: Sequence[ComponentSpec], name: str) -> str:
    return next((s.version for s in specs if s.name == name), "v1")
