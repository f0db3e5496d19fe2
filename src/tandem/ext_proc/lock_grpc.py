"""The lock RPCs of ``dapr.proto.runtime.v1.Dapr``: TryLockAlpha1 and UnlockAlpha1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from dapr.proto.runtime.v1 import lock_pb2

from tandem.blocks.lock.service import LockService


async def try_lock(service: LockService, r: lock_pb2.TryLockRequest) -> lock_pb2.TryLockResponse:
    success = await service.try_lock(r.store_name, r.resource_id, r.lock_owner, r.expiry_in_seconds)
    return lock_pb2.TryLockResponse(success=success)


async def unlock(service: LockService, r: lock_pb2.UnlockRequest) -> lock_pb2.UnlockResponse:
    status = await service.unlock(r.store_name, r.resource_id, r.lock_owner)
    return lock_pb2.UnlockResponse(status=int(status))  # type: ignore[arg-type]


def rpcs(service: LockService) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    return {
        "TryLockAlpha1": lambda r: try_lock(service, r),
        "UnlockAlpha1": lambda r: unlock(service, r),
    }
