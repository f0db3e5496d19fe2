"""Consistent hashing of actor ids onto the hosts of their type.

Each host contributes ``VNODES`` points to the ring, so adding or removing one host moves
only about 1/n of the actors. Hosts are identified by a stable id (the sidecar's node id),
never by an address: a host that restarts on new ports keeps its share.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

VNODES = 100


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class Ring:
    hosts: tuple[str, ...]
    _points: tuple[int, ...] = field(repr=False, compare=False, default=())
    _owners: tuple[str, ...] = field(repr=False, compare=False, default=())

    @classmethod
    def of(cls, hosts: Iterable[str]) -> Ring:
        unique = tuple(sorted(set(hosts)))
        pairs = sorted((_point(f"{host}#{i}"), host) for host in unique for i in range(VNODES))
        return cls(unique, tuple(p for p, _ in pairs), tuple(h for _, h in pairs))

    def owner(self, actor_id: str) -> str | None:
        if not self._points:
            return None
        i = bisect.bisect_left(self._points, _point(actor_id))
        return self._owners[i % len(self._owners)]
