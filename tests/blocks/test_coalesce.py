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


class GatedStore:
    """Holds each batch until the test releases it, one event per batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.arrived = asyncio.Condition()

    async def flush(self, items: list[str]) -> list[str]:
        gate = asyncio.Event()
        async with self.arrived:
            self.batches.append(list(items))
            self.gates.append(gate)
            self.arrived.notify_all()
        await gate.wait()
        return [i.upper() for i in items]

    async def until_batches(self, n: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.batches) >= n), 5)


async def test_with_in_flight_a_batch_starts_while_earlier_ones_are_out() -> None:
    store = GatedStore()
    group: Coalescer[str, str] = Coalescer(store.flush, in_flight=2)
    first = asyncio.ensure_future(group.submit("a"))
    await store.until_batches(1)
    second = asyncio.ensure_future(group.submit("b"))
    await store.until_batches(2)  # did not wait for the first batch to come back
    third = [asyncio.ensure_future(group.submit(i)) for i in ("c", "d")]
    await asyncio.sleep(0)  # let them queue: both drains are busy, so no third batch
    assert store.batches == [["a"], ["b"]]
    store.gates[1].set()  # the second batch ends first; its drain takes what queued
    assert await second == "B"
    await store.until_batches(3)
    assert store.batches[2] == ["c", "d"]
    store.gates[0].set()
    store.gates[2].set()
    assert [await first, *(await asyncio.gather(*third))] == ["A", "C", "D"]
    fourth = asyncio.ensure_future(group.submit("e"))
    await store.until_batches(4)
    store.gates[3].set()
    assert await fourth == "E"  # the drains went on serving
