"""Configuration ``spec.workflow`` as the engine takes it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from tandem.blocks.workflows.record import CANCELED, COMPLETED, FAILED, TERMINATED

# stateRetentionPolicy keys: anyTerminal is the default for the three specific ones.
RETENTION_KEYS = {
    "completed": (COMPLETED,),
    "failed": (FAILED,),
    "terminated": (TERMINATED, CANCELED),
}
ANY_TERMINAL = "anyTerminal"


def retention_by_status(policy: Mapping[str, timedelta]) -> dict[int, timedelta]:
    out: dict[int, timedelta] = {}
    if ANY_TERMINAL in policy:
        for statuses in RETENTION_KEYS.values():
            for status in statuses:
                out[status] = policy[ANY_TERMINAL]
    for key, statuses in RETENTION_KEYS.items():
        if key in policy:
            for status in statuses:
                out[status] = policy[key]
    return out


def unknown_retention_keys(policy: Mapping[str, timedelta]) -> list[str]:
    return sorted(k for k in policy if k != ANY_TERMINAL and k not in RETENTION_KEYS)
