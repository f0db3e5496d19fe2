"""What every configuration store offers: items by key, and a stream of their changes."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ConfigurationItem:
    value: str
    version: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


DELETED = ConfigurationItem("")  # what a subscriber is sent for a key that was deleted

Items = dict[str, ConfigurationItem]


class ConfigurationStore(Protocol):
    async def get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        """The items of ``keys`` that exist; every item when ``keys`` is empty."""
        ...

    def watch(
        self, keys: Sequence[str], metadata: Mapping[str, str]
    ) -> AsyncGenerator[Items, None]:
        """First ``{}`` once changes are watched, then each change of ``keys`` (every key
        when empty) as it happens, until closed. Raises before the first yield for a
        subscription the store cannot serve."""
        ...

    async def close(self) -> None: ...
