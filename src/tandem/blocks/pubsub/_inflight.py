"""Bounded concurrent handling of fetched messages, shared by the broker components.

A broker fetches at most :attr:`InFlight.free` messages, starts each with :meth:`start`,
and learns each outcome through ``settle`` (ack or nack). At most ``concurrency`` handlers
run at once; the broker may fetch as many again ahead of them (started in fetch order as
handlers finish), so a handler slot never waits for the broker's round trips: the next
message is already here, and a finished handler's ack goes out while the next one runs.
While messages fetched ahead are still waiting for a slot, the broker fetches again only
once half a window is free (:meth:`wait_free`): under load one fetch brings several
messages instead of one per finished handler (a broker round trip each); when nothing
waits, it fetches at once, so an idle subscription's latency is unchanged.
Messages fetched ahead are held like running ones (:meth:`messages`: the broker keeps
their leases). On close, :meth:`drain` gives back what has not started at once, waits for
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
        self._batch = max(1, self._limit // 2)
        # FIFO: messages start in the order they were fetched.
        self._slots = asyncio.Semaphore(self._limit)
        self._tasks: dict[asyncio.Task[None], Message] = {}
        self._started: set[asyncio.Task[None]] = set()  # past the slot: handling or settling
        self._freed = asyncio.Event()
        # Kept: on Python 3.11 get_running_loop() and current_task() are a getpid syscall
        # each, and every message starts a task.
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def free(self) -> int:
        """How many more messages the broker may fetch now."""
        return 2 * self._limit - len(self._tasks)

    def messages(self) -> list[Message]:
        return list(self._tasks.values())

    def _should_fetch(self) -> bool:
        free = self.free
        waiting = len(self._tasks) - len(self._started)  # fetched ahead, not yet started
        return free > 0 and (waiting == 0 or free >= self._batch)

    async def wait_free(self) -> None:
        """Until the broker should fetch (see the module's docstring)."""
        while not self._should_fetch():
            self._freed.clear()
            await self._freed.wait()

    def start(self, msg: Message) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        me: list[asyncio.Task[None]] = []
        task = loop.create_task(self._run(msg, me))
        me.append(task)
        self._tasks[task] = msg
        task.add_done_callback(self._done)

    async def _run(self, msg: Message, me: list[asyncio.Task[None]]) -> None:
        task = me[0]  # set before the task first runs
        async with self._slots:
            self._started.add(task)
            if len(self._started) == len(self._tasks):
                self._freed.set()  # nothing left waiting: the broker may fetch now
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
        self._started.discard(task)
        self._freed.set()

    async def drain(self, grace: float) -> list[Message]:
        """Give back what has not started; wait up to ``grace`` s for the handlers in
        flight, cancel the rest and return all their messages."""
        waiting = {t: m for t, m in self._tasks.items() if t not in self._started}
        for task in waiting:
            task.cancel()
        busy = [t for t in self._tasks if t not in waiting]
        if busy:
            await asyncio.wait(busy, timeout=max(grace, 0.0))
        left = {t: m for t, m in self._tasks.items() if t not in waiting}
        for task in left:
            task.cancel()
        if waiting or left:
            await asyncio.wait([*waiting, *left])
        return [*waiting.values(), *left.values()]
