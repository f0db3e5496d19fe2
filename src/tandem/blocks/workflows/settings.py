"""Configuration ``spec.workflow`` as the engine takes it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

# stateRetentionPolicy keys: anyTerminal is the default for the three specific ones.
RETENTION_KEYS = ("completed", "failed", "terminated")
ANY_TERMINAL = "anyTerminal"


def retention_by_status(policy: Mapping[str, timedelta]) -> dict[int, timedelta]:
    # The statuses are the SDK's proto values: loaded with the engine, not with the
    # configuration (whose check needs only the keys).
    from tandem.blocks.workflows.record import CANCELED, COMPLETED, FAILED, TERMINATED

    statuses_of = {
        "completed": (COMPLETED,),
        "failed": (FAILED,),
        "terminated": (TERMINATED, CANCELED),
    }
    out: dict[int, timedelta] = {}
    if ANY_TERMINAL in policy:
        for statuses in statuses_of.values():
            for status in statuses:
                out[status] = policy[ANY_TERMINAL]
    for key, statuses in statuses_of.items():
        if key in policy:
            for status in statuses:
                out[status] = policy[key]
    return out


def unknown_retention_keys(policy: Mapping[str, timedelta]) -> list[str]:
    return sorted(k for k in policy if k != ANY_TERMINAL and k not in RETENTION_KEYS)
