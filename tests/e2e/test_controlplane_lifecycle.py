"""The machine's control plane (issue 22): it exits by itself after its idle time with no
sidecar, and `tandem stop --all` stops every sidecar and then the control plane."""

from __future__ import annotations

import json

from harness import start_sidecar, tandem_cli, wait_until

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


def test_status_logs_version_and_completion(tandem_home):
    sidecar = start_sidecar(tandem_home, "told")
    try:
        report = json.loads(tandem_cli(tandem_home, "status", "-o", "json").stdout)
        cp = report["controlPlane"]
        assert cp["running"] and cp["pid"] == control_plane_pid(tandem_home)
        assert cp["address"].startswith("unix:") and cp["uptimeSeconds"] >= 0
        assert cp["caExpires"]  # the mesh root's end, ISO 8601
        [told] = [s for s in report["sidecars"] if s["appId"] == "told"]
        assert told["httpPort"] == sidecar.http_port and told["controlPlane"] == "connected"
        assert "runtime ready" in tandem_cli(tandem_home, "logs", "--app-id", "told").stdout
        missing = tandem_cli(tandem_home, "logs", "--app-id", "nobody")
        assert missing.returncode == 1 and "no runtime log for app id nobody" in missing.stderr
    finally:
        sidecar.stop()
    version = json.loads(tandem_cli(tandem_home, "version", "-o", "json").stdout)
    assert version["daprApi"] == "v1.0" and version["daprSdk"] == "1.19"
    script = tandem_cli(tandem_home, "completion", "bash").stdout
    assert "complete" in script
    assert "--run-file" in script and "status" in script


def test_stop_all_stops_every_sidecar_and_the_control_plane(tandem_home):
    sidecars = [start_sidecar(tandem_home, name) for name in ("all-a", "all-b")]
    pid = control_plane_pid(tandem_home)
    done = tandem_cli(tandem_home, "stop", "--all")
    assert done.returncode == 0, done.stderr
    assert "stopped all-a" in done.stdout and "stopped all-b" in done.stdout
    assert f"stopped the control plane (pid {pid})" in done.stdout
    for sidecar in sidecars:
        assert sidecar.proc.wait(10) == 0
    assert not pid_alive(pid)
