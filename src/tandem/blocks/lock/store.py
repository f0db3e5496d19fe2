"""What every lock store offers: an owned lock with an expiry, and Dapr's unlock status."""

from __future__ import annotations

import enum
from typing import Protocol


class UnlockStatus(enum.IntEnum):
    """Dapr's numbers, on the wire as they are (HTTP ``{"status": N}``, gRPC's enum)."""

    SUCCESS = 0
    LOCK_DOES_NOT_EXIST = 1
    LOCK_BELONGS_TO_OTHERS = 2
    INTERNAL_ERROR = 3


class LockStore(Protocol):
    async def try_lock(self, resource: str, owner: str, expiry_seconds: int) -> bool:
        """Take the lock for ``owner`` unless someone holds it; False when held."""
        ...

    async def unlock(self, resource: str, owner: str) -> UnlockStatus: ...

    async def close(self) -> None: ...
