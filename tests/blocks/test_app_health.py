"""App health checks: Dapr's threshold, recovery on one success, and deliveries held."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tandem.blocks.app_health import AppHealth, AppHealthConfig, go_duration


def _probe(answers: Iterator[bool | Exception]):
    async def probe(timeout: float) -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return probe


async def test_app_turns_unhealthy_only_after_threshold_failures_in_a_row() -> None:
    health = AppHealth(_probe(iter([False, True, False, False, False])), AppHealthConfig())

    seen = []
    for _ in range(5):
        await health.check_once()
        seen.append(health.healthy)

    assert seen == [True, True, True, True, False]


async def test_one_success_makes_the_app_healthy_and_releases_waiters() -> None:
    health = AppHealth(
        _probe(iter([ConnectionError("refused"), False, True])), AppHealthConfig(threshold=2)
    )
    await health.check_once()
    await health.check_once()
    assert not health.healthy
    waiter = asyncio.ensure_future(health.wait_healthy())
    await asyncio.sleep(0)
    assert not waiter.done()

    await health.check_once()

    await asyncio.wait_for(waiter, 1)
    assert health.healthy


async def test_a_probe_slower_than_the_timeout_fails() -> None:
    async def slow(timeout: float) -> bool:
        await asyncio.sleep(10)
        return True

    health = AppHealth(slow, AppHealthConfig(timeout=0.01, threshold=1))
    await health.check_once()

    assert not health.healthy


@pytest.mark.parametrize(
    ("seconds", "text"), [(5.0, "5s"), (0.5, "500ms"), (1.5, "1.5s"), (0.2, "200ms")]
)
def test_durations_print_as_dapr_prints_them(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
