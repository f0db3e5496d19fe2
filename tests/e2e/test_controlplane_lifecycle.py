"""The machine's control plane (issue 22): it exits by itself after its idle time with no
sidecar, and `tandem stop --all` stops every sidecar and then the control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness import start_sidecar, wait_until

from tandem.procs import pid_alive


def control_plane_pid(home) -> int:
    return int(json.loads((home / "controlplane.json").read_text())["pid"])


def test_the_control_plane_exits_when_idle(tandem_home):
    sidecar = start_sidecar(tandem_home, "idle-one", env={"TANDEM_CONTROL_PLANE_IDLE_EXIT": "1"})
    pid = control_plane_pid(tandem_home)
    assert sidecar.stop() == 0
    try:
        wait_until(lambda: not pid_alive(pid), 20, "the idle control plane to exit")
    except AssertionError:
        print((tandem_home / "logs" / "controlplane.log").read_text()[-3000:])
        raise
    assert not (tandem_home / "controlplane.json").exists()


def test_stop_all_stops_every_sidecar_and_the_control_plane(tandem_home):
    sidecars = [start_sidecar(tandem_home, name) for name in ("all-a", "all-b")]
    pid = control_plane_pid(tandem_home)
    done = subprocess.run(
        [sys.executable, "-m", "tandem.cli.main", "stop", "--all"],
        env={**os.environ, "TANDEM_HOME": str(tandem_home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "stopped all-a" in done.stdout and "stopped all-b" in done.stdout
    assert f"stopped the control plane (pid {pid})" in done.stdout
    for sidecar in sidecars:
        assert sidecar.proc.wait(10) == 0
    assert not pid_alive(pid)
