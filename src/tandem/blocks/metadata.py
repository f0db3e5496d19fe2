"""The metadata building block: what this sidecar is and what it has loaded."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tandem import RUNTIME_VERSION
from tandem.blocks.app_health import AppHealthConfig


@dataclass(frozen=True, slots=True)
class ComponentInfo:
    name: str
    type: str
    version: str
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """One active pub/sub subscription; ``type`` is DECLARATIVE, PROGRAMMATIC or STREAMING."""

    pubsub_name: str
    topic: str
    rules: tuple[tuple[str, str], ...]  # (match, path); "" matches everything
    type: str
    dead_letter_topic: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppConnection:
    port: int | None
    protocol: str = "http"
    channel_address: str = "127.0.0.1"
    max_concurrency: int = 0
    health: AppHealthConfig | None = None  # set with --enable-app-health-check


@dataclass(frozen=True, slots=True)
class ActorRuntimeInfo:
    """``actorRuntime`` of the metadata API (Dapr's shape), plus where each actor lives."""

    status: str  # INITIALIZING | DISABLED | RUNNING
    active: tuple[tuple[str, int], ...]  # (type, count), hosted types with 0 included
    host_ready: bool
    placement: str  # "placement: connected" / "placement: disconnected"


@dataclass(frozen=True, slots=True)
class Metadata:
    """A consistent snapshot; the HTTP and gRPC doors each render it their way."""

    id: str
    runtime_version: str
    components: tuple[ComponentInfo, ...]
    extended: dict[str, str]
    app: AppConnection
    enabled_features: tuple[str, ...] = ()
    subscriptions: tuple[SubscriptionInfo, ...] = ()
    actors: ActorRuntimeInfo | None = None


@dataclass(slots=True)
class MetadataService:
    app_id: str
    components: Sequence[ComponentInfo] = ()
    app: AppConnection = field(default_factory=lambda: AppConnection(port=None))
    enabled_features: tuple[str, ...] = ()
    subscriptions: Sequence[SubscriptionInfo] = ()
    # The actors block reports its runtime here when it is wired.
    actors: Callable[[], ActorRuntimeInfo] | None = None
    # PUT /v1.0/metadata/{key} lands here; in memory only, as in Dapr.
    _extended: dict[str, str] = field(default_factory=dict)

    def set_extended(self, key: str, value: str) -> None:
        self._extended[key] = value

    def snapshot(self) -> Metadata:
        extended = {"daprRuntimeVersion": RUNTIME_VERSION, **self._extended}
        return Metadata(
            id=self.app_id,
            runtime_version=RUNTIME_VERSION,
            components=tuple(self.components),
            extended=extended,
            app=self.app,
            enabled_features=self.enabled_features,
            subscriptions=tuple(self.subscriptions),
            actors=self.actors() if self.actors is not None else None,
        )
