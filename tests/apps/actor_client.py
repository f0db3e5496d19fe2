"""Calls ``Counter`` actors with the SDK's ActorProxy, as Dapr's examples do.

argv: a command, then its arguments. Prints one JSON line with the results.
"""

from __future__ import annotations

import asyncio
import json
import sys

from dapr.actor import ActorId, ActorProxy

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from counter_actor import CounterInterface  # noqa: E402


def proxy(actor_id: str) -> ActorProxy:
    return ActorProxy.create("Counter", ActorId(actor_id), CounterInterface)


async def main() -> None:
    command, *args = sys.argv[1:]
    if command == "add":  # add <id> <by> [times]
        times = int(args[2]) if len(args) > 2 else 1
        out = [await proxy(args[0]).Add(int(args[1])) for _ in range(times)]
    elif command == "slow-burst":  # slow-burst <id> <calls> <ms>
        p = proxy(args[0])
        out = await asyncio.gather(*(p.Slow(int(args[2])) for _ in range(int(args[1]))))
    elif command == "parallel":  # parallel <ms> <id>...
        out = await asyncio.gather(*(proxy(i).Slow(int(args[0])) for i in args[1:]))
    elif command == "remind":  # remind <id> <period ms>
        out = await proxy(args[0]).Remind(int(args[1]))
    elif command == "forget":
        out = await proxy(args[0]).Forget()
    elif command == "chain":  # chain <id> <next id>...
        out = await proxy(args[0]).Chain(args[1:])
    elif command == "tick":
        out = await proxy(args[0]).Tick(int(args[1]))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out))


asyncio.run(main())
