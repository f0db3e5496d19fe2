"""Versioned placement tables: which host owns each actor, under which version."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tandem.placement.ring import Ring


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """Totally ordered across control-plane restarts: a restarted control plane takes the
    next ``epoch`` (persisted), so it can never issue a version an old host still holds."""

    epoch: int
    number: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.number}"

    @classmethod
    def parse(cls, text: str) -> Version:
        epoch, _, number = text.partition(".")
        return cls(int(epoch), int(number))


@dataclass(frozen=True, slots=True)
class Table:
    version: Version
    # actor type -> ring of the hosts (sidecar node ids) that serve it
    rings: Mapping[str, Ring] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(cls, version: Version, hosts: Mapping[str, frozenset[str]]) -> Table:
        """``hosts``: host id -> the actor types its app serves."""
        by_type: dict[str, list[str]] = {}
        for host, types in hosts.items():
            for actor_type in types:
                by_type.setdefault(actor_type, []).append(host)
        rings = {t: Ring.of(hs) for t, hs in sorted(by_type.items())}
        return cls(version, MappingProxyType(rings))

    def owner(self, actor_type: str, actor_id: str) -> str | None:
        ring = self.rings.get(actor_type)
        return None if ring is None else ring.owner(actor_id)

    def hosts(self) -> frozenset[str]:
        return frozenset(h for ring in self.rings.values() for h in ring.hosts)

    def membership(self) -> dict[str, frozenset[str]]:
        out: dict[str, set[str]] = {}
        for actor_type, ring in self.rings.items():
            for host in ring.hosts:
                out.setdefault(host, set()).add(actor_type)
        return {h: frozenset(ts) for h, ts in out.items()}
