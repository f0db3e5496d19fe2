"""Sidecar readiness, as `/v1.0/healthz` and `/v1.0/healthz/outbound` report it."""

from __future__ import annotations

from dataclasses import dataclass, field

from tandem.blocks.errors import DaprError


@dataclass(slots=True)
class Health:
    app_id: str
    # Names of what is not ready yet; empty means ready.
    _pending: set[str] = field(default_factory=lambda: {"components"})
    _outbound_pending: set[str] = field(default_factory=lambda: {"components"})

    def mark_ready(self, target: str) -> None:
        self._pending.discard(target)
        self._outbound_pending.discard(target)

    def mark_not_ready(self, target: str, *, outbound: bool = True) -> None:
        self._pending.add(target)
        if outbound:
            self._outbound_pending.add(target)

    def check(self, appid: str | None = None) -> None:
        if appid is not None and appid != self.app_id:
            raise DaprError(
                "ERR_HEALTH_APPID_NOT_MATCH",
                f"dapr app-id does not match: {appid} != {self.app_id}",
            )
        if self._pending:
            raise DaprError(
                "ERR_HEALTH_NOT_READY", f"dapr is not ready: {', '.join(sorted(self._pending))}"
            )

    def check_outbound(self) -> None:
        if self._outbound_pending:
            raise DaprError(
                "ERR_OUTBOUND_HEALTH_NOT_READY",
                f"dapr outbound is not ready: {', '.join(sorted(self._outbound_pending))}",
            )
