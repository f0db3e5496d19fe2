"""Names shared by the state test modules (kept out of conftest.py, which tests can't import
reliably when several directories have one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tandem.blocks.state.service import StateService

STORE = "store"

# The store kinds (conftest.py ``store_kind``) that declare QUERY_API.
QUERY_KINDS = ("sqlite", "postgresql", "in-memory")

MakeService = Callable[..., Awaitable[StateService]]


async def eventually(check: Callable[[], Awaitable[bool]], deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if await check():
            return
        await asyncio.sleep(0.05)  # poll interval; the deadline is the assertion
    raise AssertionError(f"condition not met within {deadline_s}s")
