"""What every agent shares: the model call (the conversation API), the shared state keys,
and a way to stop when the orchestrator says the pipeline is done."""

from __future__ import annotations

import json
import os
from typing import Any

from dapr.clients import DaprClient
from dapr.clients.grpc.conversation import ConversationInput

LLM = "llm"  # the conversation component (resources/llm.yaml)
STORE = "statestore"
PUBSUB = "pubsub"
TOPIC = "subtasks"
RESEARCHERS = ("researcher-1", "researcher-2")
WRITER = "writer"


def ask(prompt: str) -> str:
    """One model call through the sidecar's conversation API."""
    with DaprClient() as client:
        answer = client.converse_alpha1(
            name=LLM, inputs=[ConversationInput(content=prompt, role="user")], temperature=0
        )
    return answer.outputs[0].result if answer.outputs else ""


def result_key(run: str, topic: str) -> str:
    return f"{run}/research/{topic}"


def save(key: str, value: Any) -> None:
    with DaprClient() as client:
        client.save_state(STORE, key, json.dumps(value))


def load(key: str) -> Any | None:
    with DaprClient() as client:
        data = client.get_state(STORE, key).data
    return json.loads(data) if data else None


def app_id() -> str:
    return os.environ.get("APP_ID", "agent")


def say(message: str) -> None:
    print(f"[{app_id()}] {message}", flush=True)
