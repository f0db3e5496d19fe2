"""Group commit for a broker's writes: concurrent callers share one round trip.

Each caller of :meth:`Coalescer.submit` waits until the batch holding its item is written
(so "acknowledged" still means "stored"), and gets that item's own error, if any. Items
submitted while a batch is being written form the next batch: one caller alone pays no
wait, and under load the round trips (a Redis pipeline, an SQLite commit, a thread hop)
are paid per batch instead of per message. Batches go out one after another in submission
order, so a caller's sequential writes keep their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_T = TypeVar("_T")

# Writes a batch; returns one entry per item: None (stored) or that item's error.
Flush = Callable[[list[_T]], Awaitable[Sequence[BaseException | None]]]


class Coalescer(Generic[_T]):
    def __init__(self, flush: Flush[_T], *, max_batch: int = 256) -> None:
        self._flush = flush
        self._max_batch = max(1, max_batch)
        self._queue: list[tuple[_T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: _T) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((item, done))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        # Shielded: a cancelled caller must not cancel a write other callers share.
        await asyncio.shield(done)

    async def _drain(self) -> None:
        batch: list[tuple[_T, asyncio.Future[None]]] = []
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    errors: Sequence[BaseException | None] = await self._flush(
                        [item for item, _ in batch]
                    )
                except Exception as exc:  # the whole batch failed: each caller learns why
                    errors = [exc] * len(batch)
                for (_, done), error in zip(batch, errors, strict=True):
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            self._task = None
            # Cancelled (the loop is closing): the batch in progress may or may not have been
            # written, the rest was not; their callers get an error either way.
            for _, done in batch + self._queue:
                if not done.done():
                    done.set_exception(RuntimeError("the broker is closing"))
            self._queue.clear()
