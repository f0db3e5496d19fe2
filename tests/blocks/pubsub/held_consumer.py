"""A consumer in its own process that takes messages and never acknowledges them.

Usage: python held_consumer.py TYPE METADATA_JSON TOPIC APP_ID
Prints ``HELD <payload>`` for each message it holds; the test then kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tandem.blocks.pubsub.broker import Message, Outcome, SubscribeOptions
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component


async def main(kind: str, metadata: dict[str, str], topic: str, app_id: str) -> None:
    spec = ComponentSpec("pubsub", kind, metadata=metadata)
    broker = create_component(spec, ComponentContext(app_id=app_id, home=Path.cwd()))

    async def hold(msg: Message) -> Outcome:
        print("HELD", msg.data.decode(), flush=True)
        await asyncio.Event().wait()
        return Outcome.SUCCESS

    await broker.subscribe(topic, hold, SubscribeOptions())
    print("READY", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]))
