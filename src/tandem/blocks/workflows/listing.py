"""Filtered, paged listing of workflow instances over the store's index (pure).

Index entries are ``[name, status name, created ISO time]``. Instances are ordered by
creation time, then id; the continuation token is the offset of the next page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tandem.blocks.workflows.record import STATUS_NAMES


@dataclass(frozen=True, slots=True)
class Filter:
    statuses: frozenset[str] = frozenset()
    name: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None

    def matches(self, entry: Sequence[Any]) -> bool:
        name, status, created = entry[0], entry[1], datetime.fromisoformat(entry[2])
        if self.statuses and status not in self.statuses:
            return False
        if self.name and name != self.name:
            return False
        if self.created_from is not None and created < self.created_from:
            return False
        return self.created_to is None or created < self.created_to


class BadToken(ValueError):
    pass


def matching(index: Mapping[str, Sequence[Any]], where: Filter) -> list[str]:
    hits = [(entry[2], i) for i, entry in index.items() if where.matches(entry)]
    return [i for _, i in sorted(hits)]


def page(
    index: Mapping[str, Sequence[Any]], where: Filter, size: int, token: str
) -> tuple[list[str], str]:
    """One page of matching ids and the token for the next ('' when this is the last)."""
    try:
        start = int(token) if token else 0
    except ValueError:
        raise BadToken(f"invalid continuation token {token!r}") from None
    ids = matching(index, where)
    if size <= 0:
        return ids[start:], ""
    end = start + size
    return ids[start:end], str(end) if end < len(ids) else ""


def purge_filter(index: Mapping[str, Sequence[Any]], msg: Any) -> list[str]:
    """The ids a ``PurgeInstanceFilter`` selects."""
    statuses = frozenset(STATUS_NAMES.get(s, "") for s in msg.runtimeStatus)
    created_from = (
        msg.createdTimeFrom.ToDatetime(tzinfo=UTC) if msg.HasField("createdTimeFrom") else None
    )
    created_to = msg.createdTimeTo.ToDatetime(tzinfo=UTC) if msg.HasField("createdTimeTo") else None
    return matching(index, Filter(statuses, "", created_from, created_to))
