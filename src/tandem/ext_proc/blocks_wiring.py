"""Which block gets which components, and which HTTP routes and gRPC RPCs each block adds."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tandem.blocks.app_channel import APP_API_TOKEN_ENV, AppChannel
from tandem.blocks.app_grpc_channel import AppGrpcChannel
from tandem.blocks.app_health import AppHealth, AppHealthConfig, probe_for
from tandem.blocks.bindings.input import InputBindings
from tandem.blocks.bindings.service import BindingsService
from tandem.blocks.configuration.service import ConfigurationService
from tandem.blocks.health import Health
from tandem.blocks.lock.service import LockService
from tandem.blocks.metadata import ComponentInfo, MetadataService, SubscriptionInfo
from tandem.blocks.outbox import Outbox, configs_from
from tandem.blocks.pubsub.app_subscriptions import AppSubscriptions, fetch_programmatic
from tandem.blocks.pubsub.broker import PubSub
from tandem.blocks.pubsub.delivery import DeliveryTarget
from tandem.blocks.pubsub.grpc_delivery import GrpcDelivery, fetch_grpc_subscriptions
from tandem.blocks.pubsub.http_delivery import HttpDelivery
from tandem.blocks.pubsub.service import PubSubService
from tandem.blocks.pubsub.streaming import StreamingSubscriptions
from tandem.blocks.pubsub.subscriber import Subscriber
from tandem.blocks.pubsub.subscriptions import (
    SubscriptionType,
    TopicSubscription,
    from_declarative,
)
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component, known_types
from tandem.blocks.resiliency import Resilient, behind_policy, resilient
from tandem.blocks.secrets.resolve import SECRET_STORE_BLOCK
from tandem.blocks.secrets.service import SecretsService
from tandem.blocks.state.resilient import resilient_store
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import StateStore
from tandem.ext_proc import (
    bindings_grpc,
    bindings_http,
    configuration_grpc,
    configuration_http,
    lock_grpc,
    lock_http,
    pubsub_grpc,
    pubsub_http,
    secrets_grpc,
    secrets_http,
    state_grpc,
    state_http,
)
from tandem.ext_proc.app_health_http import serve_app_health
from tandem.ext_proc.conversation_wiring import wire_conversation
from tandem.ext_proc.crypto_wiring import wire_crypto
from tandem.ext_proc.grpc_api import Rpc
from tandem.ext_proc.reload import SwapReload
from tandem.ext_proc.router import Router
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.observability.tracing import NO_TRACING, Tracing
from tandem.resources import Resiliency, Subscription
from tandem.resources.configuration import SUPPORTED_MIDDLEWARE
from tandem.resources.resiliency import component_policy

log = logging.getLogger("tandem.runtime")

# Building blocks this runtime serves; components of other blocks are skipped with a warning
# so an existing Dapr resources folder (which usually also holds pubsub.yaml) still starts.
SERVED_BLOCKS = frozenset(
    {"state", "pubsub", "bindings", "lock", "configuration", "conversation", "crypto"}
)


def _info(s: TopicSubscription) -> SubscriptionInfo:
    rules = () if s.type is SubscriptionType.STREAMING else s.rules
    return SubscriptionInfo(
        pubsub_name=s.pubsub_name,
        topic=s.topic,
        rules=tuple((r.match, r.path) for r in rules),
        type=s.type.value,
        dead_letter_topic=s.dead_letter_topic or "",
        metadata=dict(s.metadata),
    )


@dataclass(slots=True)
class SubscriptionBoard:
    """What the metadata API lists: the app's subscriptions, then the open streams."""

    metadata: MetadataService | None = None
    app: list[TopicSubscription] = field(default_factory=list)
    streaming: list[TopicSubscription] = field(default_factory=list)

    def set_app(self, subs: Sequence[TopicSubscription]) -> None:
        self.app = list(subs)
        self._publish()

    def set_streaming(self, subs: Sequence[TopicSubscription]) -> None:
        self.streaming = list(subs)
        self._publish()

    def _publish(self) -> None:
        if self.metadata is not None:
            self.metadata.subscriptions = [_info(s) for s in self.app + self.streaming]


@dataclass(slots=True)
class Wiring:
    rpcs: dict[str, Rpc] = field(default_factory=dict)
    components: list[ComponentInfo] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Run once the gRPC server is up (background consumers such as the outbox's).
    starters: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    pubsub: PubSubService | None = None
    state: StateService | None = None
    outbox: Outbox | None = None
    board: SubscriptionBoard = field(default_factory=SubscriptionBoard)
    # The app's gRPC channel once start_app opened it (``--app-protocol grpc`` only).
    app_grpc: AppGrpcChannel | None = None
    # The app's HTTP channel once start_app opened it (configuration updates are pushed).
    app_channel: AppChannel | None = None
    # Each served component's metadata, by name (the actors block looks for its store).
    component_metadata: dict[str, Mapping[str, str]] = field(default_factory=dict)
    streams: StreamingSubscriptions | None = None
    # The app's subscriptions once start_app ran (hot reload changes them).
    app_subscriptions: AppSubscriptions | None = None
    bindings: BindingsService | None = None
    metrics: RuntimeMetrics = NO_METRICS
    # The blocks whose components hot reload replaces in place.
    swaps: list[SwapReload] = field(default_factory=list)


def state_policy_wrapper(
    resiliencies: Sequence[Resiliency], metrics: RuntimeMetrics = NO_METRICS
) -> Callable[[str, StateStore], StateStore]:
    """Each state store behind its outbound Resiliency policy (left bare without one)."""

    def wrap(name: str, store: StateStore) -> StateStore:
        runner = resilient(
            component_policy(resiliencies, name, "outbound", "Statestore"),
            name,
            metrics.activations_for("outbound", f"component_{name}"),
        )
        return store if runner is None else resilient_store(store, runner)

    return wrap


# Publishing is the outbound side of a pubsub; subscribing (inbound) is the subscriber's.
_PUBLISH_CALLS = ("publish", "bulk_publish")


def pubsub_policy_wrapper(
    resiliencies: Sequence[Resiliency], metrics: RuntimeMetrics = NO_METRICS
) -> Callable[[str, PubSub], PubSub]:
    def wrap(name: str, broker: PubSub) -> PubSub:
        runner = resilient(
            component_policy(resiliencies, name, "outbound", "Pubsub"),
            name,
            metrics.activations_for("outbound", f"component_{name}"),
        )
        return broker if runner is None else behind_policy(broker, runner, _PUBLISH_CALLS)

    return wrap


def wire_blocks(
    router: Router,
    specs: Sequence[ComponentSpec],
    ctx: ComponentContext,
    *,
    metadata: MetadataService | None = None,
    resiliencies: Sequence[Resiliency] = (),
    tracing: Tracing = NO_TRACING,
    metrics: RuntimeMetrics = NO_METRICS,
) -> Wiring:
    wiring = Wiring(board=SubscriptionBoard(metadata))
    served = []
    for spec in specs:
        block = spec.type.split(".", 1)[0]
        if block == "middleware" and spec.type in SUPPORTED_MIDDLEWARE:
            continue  # compiled into Envoy by the control plane (xds/translate/middleware.py)
        if block in SERVED_BLOCKS:
            served.append(spec)
        else:
            log.warning(
                "component %s skipped: its building block (%s) is not served by this runtime yet",
                spec.name,
                block,
                extra={"type": spec.type},
            )
    unknown = [s for s in served if s.type not in known_types()]
    if unknown:
        s = unknown[0]
        known = ", ".join(
            sorted(t for t in known_types() if t.startswith(s.type.split(".")[0] + "."))
        )
        raise ValueError(f"component {s.name}: unknown type {s.type!r} (known: {known})")

    state = StateService.from_specs(served, ctx, wrap=state_policy_wrapper(resiliencies, metrics))
    wiring.state = state
    wiring.component_metadata = {s.name: s.metadata for s in served}
    state.tracing, state.metrics = tracing, metrics
    state_http.register(router, state)
    wiring.rpcs.update(state_grpc.rpcs(state))
    for name, comp in state.components.items():
        caps = tuple(sorted(f.value for f in state.features(name)))
        wiring.components.append(ComponentInfo(name, comp.type, _version(served, name), caps))
    wiring.closers.append(state.close)

    pubsub = PubSubService.from_specs(
        served, ctx, wrap=pubsub_policy_wrapper(resiliencies, metrics)
    )
    pubsub.tracing, pubsub.metrics = tracing, metrics
    pubsub_http.register(router, pubsub)
    streams = StreamingSubscriptions(
        pubsub, resiliencies=resiliencies, on_change=wiring.board.set_streaming
    )
    wiring.rpcs.update(pubsub_grpc.rpcs(pubsub, streams))
    for name, ps in pubsub.components.items():
        caps = tuple(sorted(f.value for f in ps.broker.features))
        wiring.components.append(ComponentInfo(name, ps.type, _version(served, name), caps))
    wiring.closers.append(pubsub.close)
    wiring.closers.append(streams.close)  # closers run in reverse: streams end first
    wiring.pubsub = pubsub
    wiring.streams = streams

    locks = LockService.from_specs(served, ctx)
    lock_http.register(router, locks)
    wiring.rpcs.update(lock_grpc.rpcs(locks))
    for name, lock in locks.components.items():
        wiring.components.append(ComponentInfo(name, lock.type, _version(served, name)))
    wiring.closers.append(locks.close)
    wiring.swaps.append(
        SwapReload("lock", lambda spec, _: LockService.build(spec, ctx), locks.swap)
    )

    configuration = ConfigurationService.from_specs(served, ctx)
    configuration.metrics = metrics
    configuration_http.register(router, configuration, lambda: wiring.app_channel)
    wiring.rpcs.update(configuration_grpc.rpcs(configuration))
    for name, conf in configuration.components.items():
        wiring.components.append(ComponentInfo(name, conf.type, _version(served, name)))
    wiring.closers.append(configuration.close)
    wiring.swaps.append(
        SwapReload(
            "configuration",
            lambda spec, _: ConfigurationService.build(spec, ctx),
            configuration.swap,
        )
    )

    wire_conversation(wiring, router, served, ctx, resiliencies, tracing)
    wire_crypto(wiring, router, served, ctx)

    bindings = BindingsService.from_specs(
        served,
        ctx,
        runner_for=lambda name: _binding_runner(resiliencies, name),
    )
    bindings.tracing, bindings.metrics = tracing, metrics
    bindings_http.register(router, bindings)
    wiring.rpcs.update(bindings_grpc.rpcs(bindings))
    for name, binding in bindings.components.items():
        caps = tuple(
            f"{d.upper()}_BINDING" for d in ("input", "output") if getattr(binding, d) is not None
        )
        wiring.components.append(ComponentInfo(name, binding.type, binding.version, caps))
    wiring.closers.append(bindings.close)
    wiring.bindings = bindings
    wiring.swaps.append(
        SwapReload(
            "bindings",
            lambda spec, res: BindingsService.build(spec, ctx, _binding_runner(res, spec.name)),
            bindings.swap,
        )
    )
    wiring.metrics = metrics

    outboxes = configs_from(
        [(s.name, s.metadata) for s in served if s.type.startswith("state.")], ctx.app_id
    )
    if outboxes:
        outbox = Outbox(state, pubsub, outboxes)
        outbox.check()
        state.transaction_hook = outbox.around_transaction
        wiring.starters.append(outbox.start)
        wiring.closers.append(outbox.close)  # stops relaying before pubsub and state close
        wiring.outbox = outbox
    return wiring


def _binding_runner(resiliencies: Sequence[Resiliency], name: str) -> Resilient | None:
    """An output binding's outbound Resiliency runner (None: no policy targets it)."""
    return resilient(component_policy(resiliencies, name, "outbound", "Bindings"), name)


def wire_secrets(
    router: Router,
    wiring: Wiring,
    secrets: SecretsService,
    ctx: ComponentContext,
    metrics: RuntimeMetrics = NO_METRICS,
) -> None:
    """The secrets API over the stores the runtime opened while loading its components."""
    secrets.metrics = metrics
    secrets_http.register(router, secrets)
    wiring.rpcs.update(secrets_grpc.rpcs(secrets))
    for name, type_ in secrets.types.items():
        wiring.components.append(ComponentInfo(name, type_, "v1"))
    wiring.closers.append(secrets.close)
    wiring.swaps.append(secret_store_reload(secrets, ctx))


def secret_store_reload(secrets: SecretsService, ctx: ComponentContext) -> SwapReload:
    """Hot reload of secret stores: a changed one is opened anew and swapped in."""
    return SwapReload(
        SECRET_STORE_BLOCK,
        lambda spec, _: (create_component(spec, ctx), spec.type),
        secrets.swap,
    )


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
    channel_socket: str | None = None,
    health_checks: AppHealthConfig | None = None,
    health_socket: Path | None = None,
    on_app_ready: Sequence[Callable[[AppChannel], Awaitable[None]]] = (),
) -> Callable[[], Awaitable[None]]:
    """Open the app channel (HTTP, or gRPC for a gRPC app; through Envoy's app channel
    listener at ``channel_socket`` when given) and, in the background, wait for the app and
    start its subscriptions; ``/v1.0/healthz`` reports not ready ("app") until then. With
    ``health_checks``, probe the app and hold deliveries while it is unhealthy, and tell
    Envoy the verdict on ``health_socket``. Returns the stopper, which drains deliveries in
    flight."""
    token = os.environ.get(APP_API_TOKEN_ENV)
    # Also the app readiness probe (the app port, and the socket when given).
    channel = AppChannel(port, app_id=app_id, token=token, socket_path=channel_socket)
    grpc_channel = (
        AppGrpcChannel(port, app_id=app_id, token=token, socket_path=channel_socket)
        if protocol in ("grpc", "grpcs")
        else None
    )
    app_health = (
        AppHealth(probe_for(channel, grpc_channel, health_checks.path), health_checks)
        if health_checks is not None
        else None
    )
    wiring.app_grpc = grpc_channel
    wiring.app_channel = channel
    health.mark_not_ready("app", outbound=False)
    target: DeliveryTarget = HttpDelivery(channel)
    if grpc_channel is not None:
        target = GrpcDelivery(grpc_channel)

    async def fetch() -> list[TopicSubscription]:
        if grpc_channel is not None:
            return await fetch_grpc_subscriptions(grpc_channel)
        return await fetch_programmatic(channel)

    assert wiring.pubsub is not None
    subscriber = Subscriber(wiring.pubsub, target, resiliencies=resiliencies, app_health=app_health)
    if wiring.board.metadata is None:
        wiring.board.metadata = metadata

    def changed(started: list[TopicSubscription]) -> None:
        wiring.board.set_app(started)
        health.mark_ready("app")

    app_subs = AppSubscriptions(
        subscriber, [from_declarative(s) for s in subscriptions], changed, fetch
    )
    wiring.app_subscriptions = app_subs
    tasks = [asyncio.create_task(app_subs.start(channel))]
    if on_app_ready:

        async def app_ready() -> None:
            await channel.wait_ready()
            for hook in on_app_ready:
                await hook(channel)

        tasks.append(asyncio.create_task(app_ready()))
    inputs: InputBindings | None = None
    # Also with no input binding yet: hot reload may add one.
    if wiring.bindings is not None:
        inputs = InputBindings(
            wiring.bindings,
            channel,
            grpc_channel,
            resiliencies=resiliencies,
            metrics=wiring.metrics,
            state=wiring.state,
        )

        async def start_inputs() -> None:
            assert inputs is not None
            await channel.wait_ready()
            await inputs.start()

        tasks.append(asyncio.create_task(start_inputs()))
    if app_health is not None:

        async def probe() -> None:
            await channel.wait_ready()
            await app_health.run()

        tasks.append(asyncio.create_task(probe()))
        if health_socket is not None:
            tasks.append(asyncio.create_task(serve_app_health(app_health, health_socket)))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if inputs is not None:
            await inputs.stop()
        wiring.app_subscriptions = None
        await app_subs.stop()
        wiring.app_channel = None
        await channel.close()
        if grpc_channel is not None:
            wiring.app_grpc = None
            await grpc_channel.close()

    return stop


def _version(specs: Sequence[ComponentSpec], name: str) -> str:
    return next((s.version for s in specs if s.name == name), "v1")
