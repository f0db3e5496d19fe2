"""Bounded concurrent handling of fetched messages, shared by the broker components.

A broker fetches at most :attr:`InFlight.free` messages, starts each with :meth:`start`,
and learns each outcome through ``settle`` (ack or nack). On close, :meth:`drain` waits for
handlers in flight and cancels the stragglers, returning their messages so the broker can
give them back unacknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tandem.blocks.pubsub.broker import Handler, Message, Outcome

log = logging.getLogger(__name__)

Settle = Callable[[Message, Outcome], Awaitable[None]]


class InFlight:
    def __init__(self, handler: Handler, settle: Settle, concurrency: int) -> None:
        self._handler = handler
        self._settle = settle
        self._limit = max(1, concurrency)
        self._tasks: dict[asyncio.Task[None], Message] = {}
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return self._limit - len(self._tasks)

    def messages(self) -> list[Message]:
        return list(self._tasks.values())

    async def wait_free(self) -> None:
        while self.free <= 0:
            self._freed.clear()
            await self._freed.wait()

    def start(self, msg: Message) -> None:
        task = asyncio.create_task(self._run(msg))
        self._tasks[task] = msg
        task.add_done_callback(self._done)

    async def _run(self, msg: Message) -> None:
        try:
            outcome = await self._handler(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription handler failed; the message will be redelivered")
            outcome = Outcome.RETRY
        try:
            await self._settle(msg, outcome)
        except Exception:
            log.exception("acknowledging message %s failed; it may be delivered again", msg.id)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._freed.set()

    async def drain(self, grace: float) -> list[Message]:
        """Wait up to ``grace`` s for handlers; cancel the rest and return their messages."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(grace, 0.0))
        left = dict(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(list(left))
        return list(left.values())
