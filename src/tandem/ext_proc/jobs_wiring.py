"""Puts the jobs block together in a runtime: the API on both doors, triggers to the app.

The jobs themselves live in the control plane's scheduler; triggers come back on the
placement stream, so a runtime with an app says on that stream that it takes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from tandem.blocks.jobs.delivery import JobDelivery
from tandem.blocks.jobs.service import JobsService
from tandem.ext_proc import jobs_grpc, jobs_http
from tandem.ext_proc.actors_wiring import ActorWiring
from tandem.ext_proc.blocks_wiring import Wiring
from tandem.ext_proc.router import Router


@dataclass(slots=True)
class JobsWiring:
    service: JobsService
    close: Callable[[], Awaitable[None]]


def wire_jobs(
    router: Router,
    wiring: Wiring,
    actors: ActorWiring,
    *,
    app_id: str,
    control_plane: str | None,
    has_app: bool,
) -> JobsWiring:
    channel = grpc.aio.insecure_channel(control_plane) if control_plane else None
    service = JobsService(app_id, channel)
    jobs_http.register(router, service)
    wiring.rpcs.update(jobs_grpc.rpcs(service))
    if has_app:
        actors.job = JobDelivery(
            lambda: wiring.app_channel, lambda: wiring.app_grpc, wiring.metrics
        )

    async def close() -> None:
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    return JobsWiring(service, close)
