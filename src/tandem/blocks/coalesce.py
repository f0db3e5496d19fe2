"""Group commit for a component's store calls: concurrent callers share one round trip.

Each caller of :meth:`Coalescer.submit` waits until the batch holding its item is done
(so a publish acknowledged is a publish stored) and gets that item's own result or error.
Items submitted while a batch is in progress form the next batch: one caller alone pays no
wait, and under load the round trips (a Redis pipeline, an SQLite commit, a thread hop)
are paid per batch instead of per call. Batches go out one after another in submission
order, so a caller's sequential calls keep their order.

``in_flight`` > 1 lets that many batches run at once (each on its own connection): a
batch then need not wait for the one before it to come back. Only for calls whose order
between callers does not matter (each call stands alone); a caller's own sequential
calls still keep their order, since it waits for each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

# Does a batch; returns one entry per item: its result, or the exception it failed with.
Flush = Callable[[list[_T]], Awaitable[Sequence[_R | BaseException]]]


class Coalescer(Generic[_T, _R]):
    def __init__(self, flush: Flush[_T, _R], *, max_batch: int = 256, in_flight: int = 1) -> None:
        self._flush = flush
        self._max_batch = max(1, max_batch)
        self._in_flight = max(1, in_flight)
        self._queue: list[tuple[_T, asyncio.Future[_R]]] = []
        self._drains = 0  # drain tasks running (at most in_flight)
        # Kept: on Python 3.11 get_running_loop() is a getpid syscall, once per call here.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: _T) -> _R:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        done: asyncio.Future[_R] = loop.create_future()
        self._queue.append((item, done))
        if self._drains < self._in_flight:
            self._drains += 1
            loop.create_task(self._drain())
        # A cancelled caller cancels only its own future (the batch, in the drain task,
        # goes on for the others and skips it): no shield, one future less per call.
        return await done

    async def _drain(self) -> None:
        batch: list[tuple[_T, asyncio.Future[_R]]] = []
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    results: Sequence[_R | BaseException] = await self._flush(
                        [item for item, _ in batch]
                    )
                except Exception as exc:  # the whole batch failed: each caller learns why
                    results = [exc] * len(batch)
                for (_, done), result in zip(batch, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, BaseException):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._drains -= 1
            # Cancelled (the loop is closing): the batch in progress may or may not have been
            # done, the rest was not; their callers get an error either way.
            left = batch if self._drains else batch + self._queue
            for _, done in left:
                if not done.done():
                    done.set_exception(RuntimeError("the component is closing"))
            if not self._drains:
                self._queue.clear()
