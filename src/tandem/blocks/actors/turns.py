"""Turn-based concurrency for one actor: one call at a time, first come first served.

With reentrancy on, a call carrying the reentrancy id of the chain that holds the turn
enters at once (A -> B -> A), one level deeper; past ``max_stack_depth`` it is refused.
Without it, such a call waits like any other — the deadlock Dapr users know, broken only by
the caller's timeout.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from tandem.blocks.errors import DaprError


@dataclass(slots=True)
class _Waiter:
    chain: str | None
    ready: asyncio.Future[None]


class TurnLock:
    __slots__ = ("_chain", "_depth", "_waiters")

    def __init__(self) -> None:
        self._chain: str | None = None
        self._depth = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def chain(self) -> str | None:
        """The reentrancy chain holding the turn, if any."""
        return self._chain if self._depth else None

    @property
    def busy(self) -> bool:
        return self._depth > 0 or bool(self._waiters)

    async def acquire(self, chain: str | None, *, reentrant: bool, max_depth: int) -> None:
        if self._depth and reentrant and chain is not None and chain == self._chain:
            if self._depth >= max_depth:
                raise DaprError(
                    "ERR_ACTOR_STACK_DEPTH",
                    f"maximum stack depth of {max_depth} exceeded for the reentrant call chain",
                )
            self._depth += 1
            return
        if self._depth == 0 and not self._waiters:
            self._chain, self._depth = chain, 1
            return
        waiter = _Waiter(chain, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.ready
        except asyncio.CancelledError:
            if waiter.ready.done() and not waiter.ready.cancelled():
                self._release_one()  # the turn was handed to us as we gave up: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._release_one()

    def _release_one(self) -> None:
        self._depth -= 1
        if self._depth > 0:
            return
        self._chain = None
        while self._waiters:
            nxt = self._waiters.popleft()
            if nxt.ready.cancelled():
                continue
            self._chain, self._depth = nxt.chain, 1
            nxt.ready.set_result(None)
            return
