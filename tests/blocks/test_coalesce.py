"""Group commit (``tandem.blocks.coalesce``): callers share batches, each gets its own
result, and a cancelled caller leaves the others' batch alone."""

from __future__ import annotations

import asyncio

import pytest

from tandem.blocks.coalesce import Coalescer


class Store:
    """Records each batch; holds a batch until released when asked to."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.started = asyncio.Event()  # a batch is in the store

    async def flush(self, items: list[str]) -> list[str | BaseException]:
        self.batches.append(list(items))
        self.started.set()
        await self.hold.wait()
        return [ValueError(i) if i.startswith("bad") else i.upper() for i in items]


async def test_callers_during_a_batch_share_the_next_one_and_get_their_own_results() -> None:
    store = Store()
    group: Coalescer[str, str] = Coalescer(store.flush)
    store.hold.clear()
    first = asyncio.ensure_future(group.submit("a"))
    await store.started.wait()
    rest = [asyncio.ensure_future(group.submit(i)) for i in ("b", "bad", "c")]
    store.hold.set()
    assert await first == "A"
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[0] == "B" and results[2] == "C"
    assert isinstance(results[1], ValueError)
    assert store.batches == [["a"], ["b", "bad", "c"]]


async def test_a_cancelled_caller_does_not_cancel_the_batch_it_shares() -> None:
    store = Store()
    group: Coalescer[str, str] = Coalescer(store.flush)
    store.hold.clear()
    quitter = asyncio.ensure_future(group.submit("q"))
    stayer = asyncio.ensure_future(group.submit("s"))
    await store.started.wait()
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    store.hold.set()
    assert await stayer == "S"
    assert store.batches == [["q", "s"]]
    assert await group.submit("next") == "NEXT"  # the drain goes on serving
