"""``lock.redis``: ``SET key owner NX PX`` to take, a script to release only one's own."""

from __future__ import annotations

import redis.asyncio as aioredis

from tandem.blocks.lock.store import UnlockStatus
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.redis import redis_client

# 1: no such lock, 2: someone else's, 0: released.
_UNLOCK = """
local owner = redis.call('GET', KEYS[1])
if not owner then return 1 end
if owner ~= ARGV[1] then return 2 end
redis.call('DEL', KEYS[1])
return 0
"""


class RedisLockStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._unlock = client.register_script(_UNLOCK)

    async def try_lock(self, resource: str, owner: str, expiry_seconds: int) -> bool:
        taken = await self._client.set(resource, owner, nx=True, px=expiry_seconds * 1000)
        return bool(taken)

    async def unlock(self, resource: str, owner: str) -> UnlockStatus:
        return UnlockStatus(int(await self._unlock(keys=[resource], args=[owner])))

    async def close(self) -> None:
        await self._client.aclose()


def create(spec: ComponentSpec, ctx: ComponentContext) -> RedisLockStore:
    return RedisLockStore(redis_client(spec.metadata, f"lock store {spec.name}"))
