"""The same actor host with no HTTP server at all: the SDK's ``ActorGrpcHost`` opens the
``SubscribeActorEventsAlpha1`` stream to the sidecar (run with ``--app-protocol grpc``)."""

from __future__ import annotations

import asyncio
import datetime
import os
import sys

from dapr.actor.runtime.config import ActorRuntimeConfig
from dapr.actor.runtime.grpc_host import ActorGrpcHost
from dapr.actor.runtime.runtime import ActorRuntime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from counter_actor import Counter  # noqa: E402


async def main() -> None:
    ActorRuntime.set_actor_config(
        ActorRuntimeConfig(actor_idle_timeout=datetime.timedelta(minutes=10))
    )
    host = ActorGrpcHost()
    await host.register_actor(Counter)
    await host.run_forever()


asyncio.run(main())
