"""Bulk writes on the SQL stores: one database transaction per bulk request, and reads are
not queued behind it (the issue: a 5,000-item save ran one transaction per item on the
store's only thread, so a concurrent GET waited ~1.5 s)."""

from __future__ import annotations

import asyncio
import time

import pytest
from state_helpers import STORE

from tandem.blocks.errors import DaprError
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import DeleteRequest, SetRequest

ITEMS = 5_000


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_a_5000_item_save_is_one_transaction_and_gets_are_not_queued_behind_it(
    svc: StateService,
) -> None:
    await svc.save(STORE, [SetRequest("probe", b'"here"')])
    items = [SetRequest(f"k{i}", b'{"n": %d}' % i) for i in range(ITEMS)]
    first, last = "k0", f"k{ITEMS - 1}"
    partial: list[tuple[bool, bool]] = []
    latencies: list[float] = []

    async def read_meanwhile(save: asyncio.Task[None]) -> None:
        while not save.done():
            started = time.perf_counter()
            probe = await svc.get(STORE, "probe")
            latencies.append(time.perf_counter() - started)
            assert probe.data == b'"here"'
            # One statement: a consistent view of both ends of the bulk.
            ends = await svc.bulk_get(STORE, [first, last])
            seen = tuple(
                item.response is not None and item.response.data is not None for item in ends
            )
            if seen[0] != seen[1]:
                partial.append(seen)  # type: ignore[arg-type]
            await asyncio.sleep(0)

    save = asyncio.create_task(svc.save(STORE, items))
    await asyncio.gather(save, read_meanwhile(save))

    assert partial == []  # never half a bulk: it committed as one transaction
    assert latencies, "no read ran during the save"
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    # Generous: the point is "not the length of the bulk" (it was ~1.5 s), not a figure.
    assert p99 < 0.5, f"GET p99 {p99 * 1000:.0f} ms during a {ITEMS}-item save"
    got = await svc.bulk_get(STORE, [first, last])
    assert [i.response.data for i in got if i.response] == [b'{"n": 0}', b'{"n": %d}' % (ITEMS - 1)]

    await svc.delete_bulk(STORE, [DeleteRequest(f"k{i}") for i in range(ITEMS)])
    gone = await svc.bulk_get(STORE, [first, last])
    assert all(i.response is None or i.response.data is None for i in gone)


async def test_a_failed_check_in_a_bulk_save_spares_the_other_items(svc: StateService) -> None:
    await svc.save(STORE, [SetRequest("a", b"1"), SetRequest("b", b"1")])
    etag = (await svc.get(STORE, "a")).etag
    assert etag is not None

    with pytest.raises(DaprError) as caught:
        await svc.save(
            STORE,
            [
                SetRequest("a", b"2", etag=etag),
                SetRequest("b", b"2", etag="999999"),  # stale: refused alone
                SetRequest("c", b"2"),
            ],
        )

    assert caught.value.http_status == 409
    assert (await svc.get(STORE, "a")).data == b"2"
    assert (await svc.get(STORE, "b")).data == b"1"
    assert (await svc.get(STORE, "c")).data == b"2"
