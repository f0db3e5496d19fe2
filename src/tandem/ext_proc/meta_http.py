"""HTTP routes of the health and metadata APIs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tandem.blocks.app_health import go_duration
from tandem.blocks.health import Health
from tandem.blocks.metadata import Metadata, MetadataService
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

_NO_CONTENT = ApiResponse.empty()


def metadata_json(md: Metadata) -> dict[str, Any]:
    """Dapr's JSON shape for GET /v1.0/metadata (empty fields omitted, as Dapr does)."""
    out: dict[str, Any] = {"id": md.id, "runtimeVersion": md.runtime_version}
    if md.enabled_features:
        out["enabledFeatures"] = list(md.enabled_features)
    if md.components:
        out["components"] = [
            {
                "name": c.name,
                "type": c.type,
                "version": c.version,
                "capabilities": list(c.capabilities),
            }
            for c in md.components
        ]
    if md.subscriptions:
        out["subscriptions"] = [
            {
                "pubsubname": s.pubsub_name,
                "topic": s.topic,
                "metadata": dict(s.metadata),
                "rules": [{"match": m, "path": p} for m, p in s.rules],
                "deadLetterTopic": s.dead_letter_topic,
                "type": s.type,
            }
            for s in md.subscriptions
        ]
    if md.actors is not None:
        active = [{"type": t, "count": n} for t, n in md.actors.active]
        out["actors"] = active
        out["actorRuntime"] = {
            "runtimeStatus": md.actors.status,
            "activeActors": active,
            "hostReady": md.actors.host_ready,
            "placement": md.actors.placement,
        }
    out["extended"] = md.extended
    app: dict[str, Any] = {"protocol": md.app.protocol, "channelAddress": md.app.channel_address}
    if md.app.port:
        app["port"] = md.app.port
    if md.app.max_concurrency:
        app["maxConcurrency"] = md.app.max_concurrency
    if md.app.health is not None:
        h = md.app.health
        app["health"] = {
            "healthCheckPath": h.path,
            "healthProbeInterval": go_duration(h.interval),
            "healthProbeTimeout": go_duration(h.timeout),
            "healthThreshold": h.threshold,
        }
    out["appConnectionProperties"] = app
    return out


def register(
    router: Router,
    health: Health,
    metadata: MetadataService,
    shutdown: Callable[[], None] | None = None,
) -> None:
    async def healthz(req: ApiRequest) -> ApiResponse:
        appid = req.query_values().get("appid", [None])[-1] if req.query else None
        health.check(appid)
        return _NO_CONTENT

    async def healthz_outbound(req: ApiRequest) -> ApiResponse:
        health.check_outbound()
        return _NO_CONTENT

    async def get_metadata(req: ApiRequest) -> ApiResponse:
        return ApiResponse.json(metadata_json(metadata.snapshot()))

    async def put_metadata(req: ApiRequest) -> ApiResponse:
        metadata.set_extended(req.params["key"], req.body.decode("utf-8", "replace"))
        return _NO_CONTENT

    async def shutdown_sidecar(req: ApiRequest) -> ApiResponse:
        assert shutdown is not None
        shutdown()
        return _NO_CONTENT

    if shutdown is not None:
        router.add(("POST", "PUT"), "/v1.0/shutdown", shutdown_sidecar)
    router.add("GET", "/v1.0/healthz", healthz)
    router.add("GET", "/v1.0/healthz/outbound", healthz_outbound)
    router.add("GET", "/v1.0/metadata", get_metadata)
    router.add(("PUT", "POST"), "/v1.0/metadata/{key}", put_metadata)
