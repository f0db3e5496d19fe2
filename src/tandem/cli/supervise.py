"""`tandem run` keeps the machine's control plane alive, and `tandem list` reports on it.

Every `tandem run` watches the control plane's pid (a file read and a signal-0 per tick, so
the watcher costs nothing measurable). When it is gone, the watcher restarts it through
:func:`tandem.cli.controlplane.restart_if_gone`, whose start lock lets exactly one of the
watching sidecars start it; the others find it running. The new control plane listens on
the same Unix socket, so every Envoy reconnects on its own, is admitted again with the
credential it already holds and gets fresh certificates from the persisted CA.

A deliberate stop (SIGTERM to the control plane, or `tandem stop --all`) leaves
``$TANDEM_HOME/stopping``: the watchers then leave it down.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tandem.cli.controlplane import (
    ControlPlaneError,
    clear_dead_record,
    restart_if_gone,
    stopping,
)
from tandem.cli.home import Home
from tandem.cli.progress import Progress
from tandem.procs import pid_alive
from tandem.xds.record import read_info

WATCH_INTERVAL_SECONDS = 0.5
# After a failed restart, wait longer before the next try: its log says why it failed.
RETRY_AFTER_FAILURE_SECONDS = 5.0


async def watch_control_plane(
    home: Home, progress: Progress, interval: float = WATCH_INTERVAL_SECONDS
) -> None:
    """Runs for the life of a `tandem run`; cancel it to stop watching."""
    stopped_reported = False
    while True:
        await asyncio.sleep(interval)
        info = read_info(home.root)
        if info is not None and pid_alive(info.pid):
            stopped_reported = False
            continue
        if stopping(home):
            if not stopped_reported:
                stopped_reported = True
                await asyncio.to_thread(clear_dead_record, home)
                progress.step_note(
                    "the control plane was stopped deliberately; not restarting it (this "
                    "sidecar keeps its configuration; the next `tandem run` starts a new one)"
                )
            continue
        dead = info.pid if info is not None else None
        try:
            cp = await asyncio.to_thread(restart_if_gone, home)
        except ControlPlaneError as exc:
            progress.fail(f"the control plane died and could not be restarted: {exc}")
            await asyncio.sleep(RETRY_AFTER_FAILURE_SECONDS)
            continue
        if cp is not None and cp.started_here:
            lost = f" (pid {dead})" if dead is not None else ""
            progress.done(f"the control plane{lost} was gone; restarted it (pid {cp.pid})")


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
