"""The control plane's side of placement: two-phase table changes under host leases.

Pure: every input carries ``now`` (seconds on the control plane's monotonic clock) and
every output is a list of messages for the caller to send on the hosts' streams, in
order. The argument for "never two activations" is in ``docs/design/actors.md``; the
rules it needs from this class are:

- R1. A table is committed only when every host of the committed table and of the new
  one has acknowledged its ``Prepare``, or has lost its stream *and* its lease has run out.
- R2. A lease is renewed only for a host whose stream is open, and the control plane
  counts it from when it received the renewal (later than the host counts it from).
- R3. After a restart (a new epoch), nothing is committed until every lease the previous
  control plane may have granted has run out (``grace_until``).
- R4. On each stream, a ``Commit`` is sent before any later ``Prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tandem.placement.table import Table, Version


@dataclass(frozen=True, slots=True)
class Prepare:
    table: Table


@dataclass(frozen=True, slots=True)
class Commit:
    version: Version


Message = Prepare | Commit
Send = tuple[str, Message]  # (host id, message)


class Coordinator:
    def __init__(
        self, *, epoch: int, lease: float, margin: float = 1.0, grace_until: float = 0.0
    ) -> None:
        self._epoch = epoch
        self.lease = lease
        # Clocks drift and messages take time: the control plane believes a lease for
        # ``margin`` longer than the host does.
        self._margin = margin
        self._grace_until = grace_until
        self._connected: dict[str, frozenset[str]] = {}  # host -> actor types
        self._lease_until: dict[str, float] = {}
        self._committed = Table(Version(epoch, 0))
        self._pending: Table | None = None
        self._acks: set[str] = set()
        self._number = 0

    @property
    def committed(self) -> Table:
        return self._committed

    @property
    def pending(self) -> Table | None:
        return self._pending

    def hosted_types(self, host: str) -> frozenset[str]:
        return self._connected.get(host, frozenset())

    # --- inputs ---------------------------------------------------------------------------

    def connect(
        self, host: str, types: frozenset[str], now: float, *, rejoin: bool = False
    ) -> list[Send]:
        """A host's stream opened (a host with no types only routes calls); ``rejoin``: an
        open stream's host now hosts ``types`` (it has every table sent so far)."""
        self._connected[host] = types
        out: list[Send] = []
        if rejoin:
            return self._reconcile(now)
        if self._committed.version.number > 0:
            # Catch the newcomer up: the table it routes by, then the change in flight.
            out += [(host, Prepare(self._committed)), (host, Commit(self._committed.version))]
        if self._pending is not None:
            out.append((host, Prepare(self._pending)))
        return out + self._reconcile(now)

    def disconnect(self, host: str, now: float) -> list[Send]:
        self._connected.pop(host, None)
        self._acks.discard(host)
        return self._reconcile(now)

    def renew(self, host: str, now: float) -> bool:
        """A host asks to extend its lease (R2). False: it must stop serving."""
        if host not in self._connected:
            return False
        self._lease_until[host] = now + self.lease + self._margin
        return True

    def prepared(self, host: str, version: Version, now: float) -> list[Send]:
        if self._pending is not None and version == self._pending.version:
            self._acks.add(host)
        return self._reconcile(now)

    def tick(self, now: float) -> list[Send]:
        """Call when a lease or the restart grace may have run out."""
        return self._reconcile(now)

    def next_deadline(self, now: float) -> float | None:
        """The earliest time at which ``tick`` could make progress, if waiting on time."""
        if self._pending is None:
            return None
        waits = [t for t in self._lease_until.values() if t > now]
        if self._grace_until > now:
            waits.append(self._grace_until)
        return min(waits) if waits else None

    # --- the state machine -------------------------------------------------------------------

    def _desired(self) -> dict[str, frozenset[str]]:
        return {h: ts for h, ts in self._connected.items() if ts}

    def _reconcile(self, now: float) -> list[Send]:
        out: list[Send] = []
        desired = self._desired()
        target = self._pending if self._pending is not None else self._committed
        if target.membership() != desired:
            # Start (or supersede) a change: a newer Prepare replaces an older pending one.
            self._number += 1
            self._pending = Table.build(Version(self._epoch, self._number), desired)
            self._acks = set()
            out += [(h, Prepare(self._pending)) for h in self._connected]
        if self._pending is not None and self._may_commit(now):
            self._committed, self._pending = self._pending, None
            self._acks = set()
            out += [(h, Commit(self._committed.version)) for h in self._connected]
        return out

    def _may_commit(self, now: float) -> bool:
        assert self._pending is not None
        if now < self._grace_until:  # R3
            return False
        for host in self._committed.hosts() | self._pending.hosts():  # R1
            if host in self._acks:
                continue
            if host in self._connected:
                return False
            if self._lease_until.get(host, 0.0) > now:
                return False
        return True
