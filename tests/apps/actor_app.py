"""An actor host served over HTTP, as Dapr's SDK examples write one (FastAPI + DaprActor)."""

from __future__ import annotations

import datetime
import os
import sys

import uvicorn
from dapr.actor.runtime.config import ActorReentrancyConfig, ActorRuntimeConfig
from dapr.actor.runtime.runtime import ActorRuntime
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from counter_actor import Counter  # noqa: E402

app = FastAPI()
actor = DaprActor(app)


@app.on_event("startup")
async def startup() -> None:
    depth = int(os.environ.get("REENTRANT_DEPTH", "0"))  # 0: reentrancy off
    ActorRuntime.set_actor_config(
        ActorRuntimeConfig(
            actor_idle_timeout=datetime.timedelta(minutes=10),
            reentrancy=ActorReentrancyConfig(enabled=True, maxStackDepth=depth) if depth else None,
        )
    )
    await actor.register_actor(Counter)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning")
