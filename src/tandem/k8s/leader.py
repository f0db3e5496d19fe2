"""Leader election on a ``coordination.k8s.io/v1`` Lease, for the parts that need one writer
(placement and its epochs, the scheduler). xDS and enrolment are served by every replica.

:class:`LeaderElection` is the pure state machine, fed the Lease as read (or None) and the
time; it says what to write, and learns the outcome (:meth:`written`, :meth:`conflict`,
:meth:`failed`). Rules, as Kubernetes' own controllers elect:

- no Lease, or one with no holder: create / take it;
- ours: renew it (``renewTime``) every round; a leader that cannot renew for
  ``renew_deadline`` seconds stops leading, before its Lease can expire for the others;
- another's: wait, and take it over once its record has not changed for its
  ``leaseDurationSeconds`` *as measured by our clock* (clocks across nodes are not
  compared), counting ``leaseTransitions`` up;
- every write carries the resourceVersion read: a 409 Conflict means another replica wrote
  first, and the next round reads again.

``leaseTransitions`` only grows, so the leader uses it as its placement epoch.
:func:`run_election` is the I/O edge (lightkube).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("tandem.k8s.leader")

DEFAULT_LEASE_SECONDS = 15
DEFAULT_RENEW_DEADLINE = 10.0
DEFAULT_RETRY_PERIOD = 2.0


def _micro_time(now: dt.datetime) -> str:
    # MicroTime: RFC 3339 with microseconds, UTC.
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Step:
    """What to do this round: ``create`` or ``update`` the Lease with ``lease``, or ``wait``."""

    action: str
    lease: dict[str, Any] | None = None


class LeaderElection:
    def __init__(
        self,
        identity: str,
        name: str,
        namespace: str,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        renew_deadline: float = DEFAULT_RENEW_DEADLINE,
    ) -> None:
        if renew_deadline >= lease_seconds:
            raise ValueError("the renew deadline must be shorter than the lease")
        self.identity = identity
        self.name = name
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.leading = False
        self.transitions = 0
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    def decide(self, lease: Mapping[str, Any] | None, now: float, wall: dt.datetime) -> Step:
        """``now`` is a monotonic clock, ``wall`` the time written into the Lease."""
        stamp = _micro_time(wall)
        if lease is None:
            return Step("create", self._lease(None, stamp, stamp, 0))
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0)
        record = (holder, spec.get("renewTime"), transitions, spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        if holder == self.identity:
            return Step(
                "update", self._lease(lease, spec.get("acquireTime") or stamp, stamp, transitions)
            )
        if self.leading:
            # Someone else holds it: we lost it (our renewals failed, or it was taken).
            self._stop("another replica holds the lease")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and now - self._observed_at < duration:
            return Step("wait")
        # Free or expired: take it over.
        return Step("update", self._lease(lease, stamp, stamp, transitions + 1))

    def _lease(
        self, current: Mapping[str, Any] | None, acquired: str, renewed: str, transitions: int
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if current is not None:
            version = (current.get("metadata") or {}).get("resourceVersion")
            if version:
                meta["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquired,
                "renewTime": renewed,
                "leaseTransitions": transitions,
            },
        }

    def written(self, lease: Mapping[str, Any], now: float) -> None:
        """The write of this round succeeded; ``lease`` is what the API server returned."""
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        self._renewed_at = now
        self.transitions = int(spec.get("leaseTransitions") or 0)
        if not self.leading:
            self.leading = True
            log.info("leading", extra={"identity": self.identity, "transitions": self.transitions})

    def conflict(self, now: float) -> None:
        """409: another replica wrote the Lease since we read it."""
        self.failed(now)

    def failed(self, now: float) -> None:
        """No write this round (conflict, API error): step down past the renew deadline."""
        if self.leading and now - self._renewed_at > self.renew_deadline:
            self._stop("could not renew the lease in time")

    def _stop(self, why: str) -> None:
        self.leading = False
        log.warning("no longer leading", extra={"identity": self.identity, "why": why})


async def run_election(
    client: Any,
    election: LeaderElection,
    on_change: Callable[[bool], Any],
    retry_period: float = DEFAULT_RETRY_PERIOD,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Elect until cancelled; ``on_change(leading)`` is awaited when leadership changes."""
    from lightkube import ApiError
    from lightkube.resources.coordination_v1 import Lease

    leading = False
    while True:
        try:
            try:
                current = await client.get(Lease, election.name, namespace=election.namespace)
                found: dict[str, Any] | None = current.to_dict()
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                found = None
            step = election.decide(found, clock(), dt.datetime.now(dt.UTC))
            if step.lease is not None:
                lease = Lease.from_dict(step.lease)
                if step.action == "create":
                    written = await client.create(lease)
                else:
                    written = await client.replace(lease)
                election.written(written.to_dict(), clock())
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            if exc.status.code == 409:
                election.conflict(clock())
            else:
                log.warning("lease call failed", extra={"error": str(exc)[:300]})
                election.failed(clock())
        except Exception as exc:
            log.warning("lease call failed", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            election.failed(clock())
        if election.leading != leading:
            leading = election.leading
            result = on_change(leading)
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(retry_period)
