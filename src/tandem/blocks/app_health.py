"""App health checks (``--enable-app-health-check``), as Dapr runs them.

The runtime probes its app every ``interval``: an HTTP app with ``GET <path>`` (healthy on
2xx), a gRPC app with ``AppCallbackHealthCheck.HealthCheck``; a probe that takes longer than
``timeout`` fails. After ``threshold`` failures in a row the app is unhealthy; one success
makes it healthy again. While it is unhealthy, deliveries to it wait
(:meth:`AppHealth.wait_healthy`): pub/sub messages stay with the runtime and the broker
(none is lost or dead-lettered for it) and go out once the app recovers. Later blocks
(input bindings, actors) wait on the same object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tandem.blocks.app_channel import AppChannel
from tandem.blocks.app_grpc_channel import AppGrpcChannel

log = logging.getLogger("tandem.app_health")

# A probe: True when the app answered healthy within the timeout (seconds) it is given.
Probe = Callable[[float], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class AppHealthConfig:
    """Dapr's defaults: /healthz, every 5 s, 500 ms timeout, 3 failures."""

    path: str = "/healthz"
    interval: float = 5.0  # seconds
    timeout: float = 0.5  # seconds
    threshold: int = 3


def go_duration(seconds: float) -> str:
    """A duration as Dapr prints these settings (Go's text): 5s, 500ms, 1.5s."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


class AppHealth:
    def __init__(self, probe: Probe, config: AppHealthConfig) -> None:
        self._probe = probe
        self.config = config
        self._healthy = asyncio.Event()
        self._healthy.set()  # checks start once the app listens, as healthy
        self._failures = 0

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    async def wait_healthy(self) -> None:
        """Returns at once while the app is healthy, else when it is healthy again."""
        await self._healthy.wait()

    async def check_once(self) -> None:
        try:
            ok = await asyncio.wait_for(self._probe(self.config.timeout), self.config.timeout)
        except Exception:  # a probe that raises or times out is a failed probe
            ok = False
        if ok:
            self._failures = 0
            if not self._healthy.is_set():
                log.info("app is healthy again: deliveries resume")
                self._healthy.set()
            return
        self._failures += 1
        if self._failures >= self.config.threshold and self._healthy.is_set():
            log.warning(
                "app is unhealthy after %d failed health checks: deliveries pause",
                self._failures,
            )
            self._healthy.clear()

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            await asyncio.sleep(self.config.interval)
            await self.check_once()


def probe_for(channel: AppChannel, grpc_channel: AppGrpcChannel | None, path: str) -> Probe:
    """The probe for the app's protocol: ``HealthCheck`` for gRPC apps, else ``GET path``."""
    if grpc_channel is not None:

        async def grpc_probe(timeout: float) -> bool:
            await grpc_channel.health_check(timeout)
            return True

        return grpc_probe

    async def http_probe(timeout: float) -> bool:
        resp = await channel.request("GET", path, timeout=timeout)
        return 200 <= resp.status < 300

    return http_probe
