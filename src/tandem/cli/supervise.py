"""`tandem list`'s report on the control plane and each sidecar's link to it (every
`tandem run` keeps the control plane alive: ``tandem.cli.watch``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tandem.cli.controlplane import (
    clear_dead_record,
    stopping,
)
from tandem.cli.home import Home
from tandem.procs import pid_alive
from tandem.xds.record import read_info


async def control_plane_link(run_dir: Path, timeout: float = 1.0) -> str:
    """Whether this sidecar's Envoy holds a live xDS stream: ``connected``, ``lost`` or
    ``unknown`` (its admin did not answer)."""
    from tandem.envoy import AdminError, admin_request

    try:
        resp = await admin_request(
            str(run_dir / "admin.sock"),
            "/stats?format=json&filter=%5Econtrol_plane%5C.connected_state%24",
            timeout=timeout,
        )
        stats = {s["name"]: s.get("value") for s in resp.json().get("stats", [])}
    except (AdminError, ValueError, KeyError, OSError):
        return "unknown"
    state = stats.get("control_plane.connected_state")
    if state is None:
        return "unknown"
    return "connected" if state == 1 else "lost"


def control_plane_summary(home: Home) -> str:
    info = read_info(home.root)
    if info is not None and pid_alive(info.pid):
        return f"control plane: running (pid {info.pid}, xDS {info.ads_address})"
    if stopping(home):
        return "control plane: stopped (deliberately; the next `tandem run` starts it)"
    if info is not None:
        # The record must not outlive its process, even with no sidecar left to notice.
        clear_dead_record(home)
        return f"control plane: DEAD (pid {info.pid} is gone; a running sidecar restarts it)"
    return "control plane: not running"


async def links(apps: list[dict[str, object]]) -> list[str]:
    """The control-plane link of each listed sidecar, concurrently."""

    async def one(app: dict[str, object]) -> str:
        run_dir = app.get("run_dir")
        return await control_plane_link(Path(run_dir)) if isinstance(run_dir, str) else "unknown"

    return list(await asyncio.gather(*(one(a) for a in apps)))
