"""A host's side of placement: may this runtime run a turn of this actor right now?

Pure: inputs carry ``now`` (the host's monotonic clock). The rules it keeps (the argument
is in ``docs/design/actors.md``):

- F1. An actor is served only if this host owns it in the committed table *and* in the
  pending one, if any: the set served shrinks at ``Prepare`` and grows only at ``Commit``.
- F2. ``Prepare`` is acknowledged only after every active actor this host does not serve
  under the new rule has been deactivated (the runtime drains it first).
- F3. Nothing is served without a lease, counted from when the renewal was *sent*; a
  lost stream drops the tables at once (the host starts from nothing when it reconnects).
"""

from __future__ import annotations

from tandem.placement.table import Table, Version


class Fence:
    def __init__(self, host: str) -> None:
        self.host = host
        self._committed: Table | None = None
        self._pending: Table | None = None
        self._lease_until = 0.0

    @property
    def version(self) -> Version | None:
        """The version this host routes and serves by (the committed one)."""
        return None if self._committed is None else self._committed.version

    @property
    def committed(self) -> Table | None:
        return self._committed

    def serves(self, actor_type: str, actor_id: str, now: float) -> bool:
        """F1 + F3: the one question every turn asks before it starts."""
        if self._committed is None or not self.leased(now):
            return False
        if self._committed.owner(actor_type, actor_id) != self.host:
            return False
        return self._pending is None or self._pending.owner(actor_type, actor_id) == self.host

    def leased(self, now: float) -> bool:
        return now < self._lease_until

    def route(self, actor_type: str, actor_id: str) -> str | None:
        """The host to send a call to: the committed owner (callers need no lease)."""
        return None if self._committed is None else self._committed.owner(actor_type, actor_id)

    # --- inputs -----------------------------------------------------------------------------

    def prepare(self, table: Table) -> None:
        """A change is coming: stop serving what ``table`` moves away (F1). The runtime then
        deactivates each active actor for which ``serves`` turned false and calls
        ``prepared`` (F2)."""
        if self._committed is not None and table.version <= self._committed.version:
            return
        # A host that joins (or rejoins) has no committed table: it serves nothing before
        # the Commit that follows.
        self._pending = table

    def commit(self, version: Version) -> bool:
        """Apply the pending table if it is the one committed. True when applied."""
        if self._pending is None or self._pending.version != version:
            return False
        self._committed, self._pending = self._pending, None
        return True

    def renewed(self, sent_at: float, lease: float) -> None:
        """The control plane granted the renewal this host sent at ``sent_at`` (F3)."""
        self._lease_until = max(self._lease_until, sent_at + lease)

    def lost(self) -> None:
        """The stream to the control plane broke: serve nothing until it is rebuilt (F3)."""
        self._committed = None
        self._pending = None
        self._lease_until = 0.0
