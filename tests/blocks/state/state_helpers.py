"""Names shared by the state test modules (kept out of conftest.py, which tests can't import
reliably when several directories have one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tandem.blocks.state.service import StateService

STORE = "store"

MakeService = Callable[..., Awaitable[StateService]]
