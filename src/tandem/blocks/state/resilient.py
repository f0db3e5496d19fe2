"""A state store behind its Resiliency policy (``targets.components.<name>.outbound``)."""

from __future__ import annotations

from tandem.blocks.resiliency import Resilient, behind_policy
from tandem.blocks.state.store import StateStore, StoreError

CALLS = ("get", "bulk_get", "set", "delete", "transact", "bulk_write", "query")


def is_failure(exc: BaseException) -> bool:
    """ETag conflicts and bad requests are answers, not a store in trouble."""
    return not isinstance(exc, StoreError | ValueError)


def resilient_store(store: StateStore, runner: Resilient) -> StateStore:
    return behind_policy(store, runner, CALLS, is_failure)
