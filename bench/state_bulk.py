"""GET latency while a 5,000-item bulk save runs on ``state.sqlite`` (in process).

Three measurements in the same run, on one fresh file each:
- baseline: GETs with nothing else going on;
- bulk: GETs while ``StateService.save`` writes 5,000 items (one transaction, reads on
  their own connection);
- per-item: the same GETs while the 5,000 items are written one ``set`` each, the path a
  bulk save took before (one transaction per item; before, the reads also queued behind
  them on the store's one thread, which no longer happens).

Prints p50 / p99 / max GET latency, the save's duration, and the ratio of each p99 to the
baseline's. Usage: ``python bench/state_bulk.py [--items 5000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import SetRequest

STORE = "bench"


def _service(folder: Path) -> StateService:
    spec = ComponentSpec(
        STORE, "state.sqlite", "v1", metadata={"connectionString": str(folder / "state.db")}
    )
    return StateService.from_specs([spec], ComponentContext(app_id="bench", home=folder))


async def _gets_while(svc: StateService, work: Awaitable[None] | None, count: int) -> list[float]:
    """GET latencies (s): ``count`` of them alone, or as many as fit while ``work`` runs."""
    latencies: list[float] = []
    task = asyncio.ensure_future(work) if work is not None else None
    while (task is not None and not task.done()) or (task is None and len(latencies) < count):
        started = time.perf_counter()
        await svc.get(STORE, "probe")
        latencies.append(time.perf_counter() - started)
    if task is not None:
        await task
    return latencies


def _row(name: str, lat: list[float], took: float | None, base_p99: float) -> str:
    lat = sorted(lat)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    took_ms = f"{took * 1000:,.0f}" if took is not None else "-"
    return (
        f"| {name} | {len(lat):,} | {p50 * 1000:.3f} | {p99 * 1000:.3f} | "
        f"{lat[-1] * 1000:.1f} | {took_ms} | {p99 / base_p99:.1f}× |"
    )


async def _round(items: int) -> list[tuple[str, list[float], float | None]]:
    out: list[tuple[str, list[float], float | None]] = []
    reqs = [SetRequest(f"k{i}", b'{"n": %d}' % i) for i in range(items)]
    modes: list[tuple[str, Callable[[StateService], Awaitable[None]] | None]] = [
        ("baseline (no writes)", None),
        (f"bulk save of {items:,} (one transaction)", lambda s: s.save(STORE, reqs)),
        (
            f"{items:,} single-item sets (old bulk path)",
            lambda s: s._run_all(  # the per-item path bulk saves used to take
                "ERR_STATE_SAVE",
                "bench",
                [
                    s.components[STORE].store.set(r)
                    for r in s._prepare_sets(s.components[STORE], reqs, "ERR_STATE_SAVE")
                ],
            ),
        ),
    ]
    for name, make in modes:
        with tempfile.TemporaryDirectory(prefix="tb") as folder:
            svc = _service(Path(folder))
            await svc.save(STORE, [SetRequest("probe", b'"here"')])
            await _gets_while(svc, None, 200)  # warm both connections
            started = time.perf_counter()
            lat = await _gets_while(svc, make(svc) if make else None, 2000)
            took = time.perf_counter() - started if make else None
            out.append((name, lat, took))
            await svc.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    merged: dict[str, tuple[list[float], list[float]]] = {}
    for _ in range(args.rounds):
        for name, lat, took in await _round(args.items):
            lats, tooks = merged.setdefault(name, ([], []))
            lats.extend(lat)
            if took is not None:
                tooks.append(took)
    base = sorted(next(iter(merged.values()))[0])
    base_p99 = base[min(len(base) - 1, int(len(base) * 0.99))]
    print("| GETs during | GETs | p50 ms | p99 ms | max ms | save ms (median) | p99 / baseline |")
    print("|---|---|---|---|---|---|---|")
    for name, (lat, tooks) in merged.items():
        print(_row(name, lat, statistics.median(tooks) if tooks else None, base_p99))


if __name__ == "__main__":
    asyncio.run(main())
