"""``python -m tandem.xds`` as the CLI runs it: detached, discovered through controlplane.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc


def _start(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tandem.xds", "--home", str(home), "--log-level", "debug"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return dict(json.loads(path.read_text()))
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear")


def test_writes_its_address_serves_ads_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    try:
        info = _wait_for_file(tmp_path / "controlplane.json", proc)
        assert info["pid"] == proc.pid
        # A Unix socket: the same address after any restart, owner-only.
        assert info["ads_address"].startswith("unix:/")
        socket_path = Path(info["ads_address"].removeprefix("unix:"))
        assert socket_path.stat().st_mode & 0o777 == 0o600
        assert socket_path.parent.stat().st_mode & 0o777 == 0o700
        assert info["started"] <= time.time()
        with grpc.insecure_channel(info["ads_address"]) as channel:
            grpc.channel_ready_future(channel).result(timeout=5)
            assert ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)  # type: ignore[no-untyped-call]

        # A second control plane for the same home refuses to start.
        second = _start(tmp_path)
        assert second.wait(timeout=20) == 1
        assert second.stderr is not None
        assert b"another control plane owns this home" in second.stderr.read()

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not (tmp_path / "controlplane.json").exists()
        # A deliberate stop: the sidecars' watchers will not restart it.
        assert (tmp_path / "stopping").exists()
        assert proc.stderr is not None
        lines = [json.loads(line) for line in proc.stderr.read().decode().splitlines()]
        assert any(entry["msg"] == "control plane ready" for entry in lines)
        assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reads_the_mesh_configuration_from_the_home_and_creates_the_ca(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: daprsystem}\n"
        "spec:\n  mtls: {enabled: false, workloadCertTTL: 2h}\n"
    )
    proc = _start(tmp_path)
    try:
        _wait_for_file(tmp_path / "controlplane.json", proc)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        lines = [json.loads(line) for line in proc.stderr.read().decode().splitlines()]
        security = next(entry for entry in lines if entry["msg"] == "mesh security")
        assert security["mtls"] is False
        assert security["workload_cert_ttl_s"] == 7200
        assert {p.name for p in (tmp_path / "ca").iterdir()} == {
            "root.pem",
            "root.key",
            "enrolment.key",
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_invalid_mesh_configuration_stops_it_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "mesh.yaml"
    bad.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: x}\n"
        "spec:\n  mtls: {workloadCertTTL: soon}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tandem.xds", "--home", str(tmp_path), "--config", str(bad)],
        capture_output=True,
        timeout=30,
    )

    assert proc.returncode == 1
    assert b"invalid mesh configuration" in proc.stderr
    assert b"workloadCertTTL" in proc.stderr
    assert not (tmp_path / "controlplane.json").exists()
