"""A research agent host: subscribes to the subtasks topic and hands each subtask to a
ResearchAgent actor, one per research thread (single-threaded turns, state of its own).
The actor drafts with the model, keeps the draft in its actor state and in the state
store, and sets a reminder for a follow-up; the follow-up refines the draft and stores the
result the orchestrator waits for. Two hosts run this file (researcher-1 and -2, both
subscribed): the same subtask reaches both, and the actor's single-threaded turns and its
state make the second delivery a no-op. Actor state belongs to the host app's id, as in
Dapr: if one host dies mid-way, the orchestrator's retried wait re-publishes the subtask
and the other host's actor does the thread again."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from agentlib import PUBSUB, TOPIC, app_id, ask, load, result_key, save, say
from dapr.actor import ActorId, ActorInterface, ActorProxy, actormethod
from dapr.actor.runtime.actor import Actor
from dapr.actor.runtime.remindable import Remindable
from dapr.ext.fastapi import DaprActor, DaprApp
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await actors.register_actor(ResearchAgent)
    yield


app = FastAPI(lifespan=lifespan)
actors = DaprActor(app)
pubsub = DaprApp(app)
server: uvicorn.Server | None = None


class ResearchAgentInterface(ActorInterface):
    @actormethod(name="Research")
    async def research(self, subtask: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError  # the proxy calls the actor; the actor implements it


class ResearchAgent(Actor, ResearchAgentInterface, Remindable):
    async def research(self, subtask: dict[str, Any]) -> dict[str, Any]:
        found, draft = await self._state_manager.try_get_state("draft")
        if found:  # the other host, or a redelivery, brought the same subtask
            return {"status": "already researching"}
        prompt = f"Research '{subtask['topic']}' for the task '{subtask['task']}'. Findings:"
        text = await asyncio.to_thread(ask, prompt)
        draft = {**subtask, "draft": text, "actor": self.id.id, "host": app_id()}
        await self._state_manager.set_state("draft", draft)
        await self._state_manager.save_state()
        key = f"{subtask['run']}/draft/{subtask['topic']}"
        await asyncio.to_thread(save, key, draft)  # the intermediate result, for anyone
        await self.register_reminder("follow-up", b"", datetime.timedelta(seconds=1), None)
        say(f"{self.id.id}: drafted, follow-up in 1 s")
        return {"status": "drafted"}

    async def receive_reminder(
        self,
        name: str,
        state: bytes,
        due_time: datetime.timedelta,
        period: datetime.timedelta | None,
        ttl: datetime.timedelta | None = None,
    ) -> None:
        if name != "follow-up":
            return
        found, draft = await self._state_manager.try_get_state("draft")
        if not found or draft is None:
            return
        text = await asyncio.to_thread(ask, f"Follow up on: {draft['draft']}")
        result = {**draft, "followup": text, "followup_host": app_id()}
        await asyncio.to_thread(save, result_key(draft["run"], draft["topic"]), result)
        await self.unregister_reminder("follow-up")
        say(f"{self.id.id}: followed up, result stored")


@app.get("/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@pubsub.subscribe(pubsub=PUBSUB, topic=TOPIC)
async def on_subtask(event: dict[str, Any]) -> dict[str, str]:
    subtask = event["data"]
    if isinstance(subtask, str):
        subtask = json.loads(subtask)
    if await asyncio.to_thread(load, result_key(subtask["run"], subtask["topic"])):
        return {"status": "SUCCESS"}  # already done (a re-published subtask)
    proxy = ActorProxy.create(
        "ResearchAgent", ActorId(f"{subtask['run']}-{subtask['topic']}"), ResearchAgentInterface
    )
    try:
        await proxy.Research(subtask)
    except Exception as exc:  # e.g. placement still settling: let pub/sub redeliver
        say(f"subtask {subtask['topic']} not taken yet ({exc}); retry")
        return {"status": "RETRY"}
    return {"status": "SUCCESS"}


@app.post("/stop")
async def stop() -> dict[str, bool]:
    """The orchestrator is done: leave, which also stops this app's sidecar."""
    if server is not None:
        server.should_exit = True
    return {"stopping": True}


if __name__ == "__main__":
    config = uvicorn.Config(
        app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning"
    )
    server = uvicorn.Server(config)
    server.run()
