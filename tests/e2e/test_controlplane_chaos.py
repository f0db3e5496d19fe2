"""Chaos: the control plane is killed (twice) under a live mesh and nobody notices.

Two sidecars with traffic; `kill -9` of the control plane; a third sidecar starts; within
10 s every pair invokes every other; with 20 s certificates, renewal goes on for 60 s
after the crash without one failed new connection; then the control plane is killed again.
Finally a deliberate stop (SIGTERM) is left alone by the watchers and `tandem list` shows
every sidecar as having lost its control plane.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
from harness import APPS, Sidecar, start_app_sidecar, tandem_cli, wait_until

from tandem.xds.ca import ca_dir, csr_public_key, load_or_create_ca, spiffe_id
from tandem.xds.enrolment import WorkloadKey

CERT_TTL_SECONDS = 20
RECOVERY_DEADLINE_SECONDS = 10.0
WATCH_AFTER_CRASH_SECONDS = 60.0


def _control_plane_pid(home: Path) -> int | None:
    try:
        return int(json.loads((home / "controlplane.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] != "Z"


def _echo_sidecar(home: Path, app_id: str) -> Sidecar:
    return start_app_sidecar(home, app_id, APPS / "echo_app.py")


def _invoke(caller: Sidecar, callee: str) -> str | None:
    """None on success, else what went wrong. A new client, so a new connection."""
    try:
        r = httpx.get(f"{caller.base}/v1.0/invoke/{callee}/method/ping", timeout=5)
    except httpx.HTTPError as exc:
        return f"{caller.app_id}->{callee}: {exc!r}"
    if r.status_code != 200 or r.headers.get("x-echo-app") != "yes":
        return f"{caller.app_id}->{callee}: {r.status_code} {r.text[:200]}"
    return None


class Traffic(threading.Thread):
    """Invokes every ordered pair of the current sidecars, round after round, each call on
    a new connection, and handshakes directly with every inbound listener as a mesh client
    (a new mTLS connection that fails once a server certificate has expired)."""

    def __init__(self, home: Path) -> None:
        super().__init__(daemon=True)
        self.sidecars: list[Sidecar] = []
        self.failures: list[str] = []
        self.rounds = 0
        self.handshakes = 0
        self._halt = threading.Event()
        self._tls = self._client_context(home)

    @staticmethod
    def _client_context(home: Path) -> ssl.SSLContext:
        ca = load_or_create_ca(ca_dir(home))
        key = WorkloadKey.generate()
        leaf = ca.sign(
            csr_public_key(key.csr_pem),
            spiffe_id("public", "default", "chaos-probe"),
            ttl=dt.timedelta(hours=1),
        )
        (home / "probe.key").write_bytes(key.private_key_pem)
        (home / "probe.pem").write_text(leaf.certificate_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # SVIDs carry a URI SAN, no host name
        context.load_verify_locations(cadata=ca.trust_bundle_pem)
        context.load_cert_chain(home / "probe.pem", home / "probe.key")
        return context

    def _handshake(self, sidecar: Sidecar) -> str | None:
        try:
            address = ("127.0.0.1", sidecar.internal_port)
            with (
                socket.create_connection(address, timeout=5) as raw,
                self._tls.wrap_socket(raw) as tls,
            ):
                tls.getpeercert()
        except (OSError, ssl.SSLError) as exc:
            return f"handshake with {sidecar.app_id}: {exc!r}"
        return None

    def run(self) -> None:
        while not self._halt.is_set():
            current = list(self.sidecars)
            for caller, callee in itertools.permutations(current, 2):
                failure = _invoke(caller, callee.app_id)
                if failure:
                    self.failures.append(f"{time.strftime('%X')} {failure}")
            for sidecar in current:
                failure = self._handshake(sidecar)
                self.handshakes += 1
                if failure:
                    self.failures.append(f"{time.strftime('%X')} {failure}")
            self.rounds += 1
            self._halt.wait(0.2)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(30)


def _serials(sidecar: Sidecar) -> set[str]:
    """The serials of the workload certificates this sidecar's Envoy holds; fails if one of
    them has expired."""
    admin = Path(sidecar.record()["run_dir"]) / "admin.sock"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(admin))) as client:
        body = client.get("http://envoy/certs").json()
    serials = set()
    now = dt.datetime.now(dt.UTC)
    for entry in body.get("certificates", []):
        for cert in entry.get("cert_chain", []):
            expires = dt.datetime.fromisoformat(cert["expiration_time"].replace("Z", "+00:00"))
            assert expires > now, f"{sidecar.app_id} holds an expired certificate: {cert}"
            serials.add(cert["serial_number"])
    return serials


def _kill_control_plane(home: Path) -> int:
    pid = _control_plane_pid(home)
    assert pid is not None and _alive(pid)
    os.kill(pid, signal.SIGKILL)
    return pid


def _wait_restarted(home: Path, dead: int) -> int:
    def restarted() -> int | None:
        pid = _control_plane_pid(home)
        return pid if pid is not None and pid != dead and _alive(pid) else None

    return int(wait_until(restarted, RECOVERY_DEADLINE_SECONDS, "a new control plane"))


def _wait_all_pairs(sidecars: list[Sidecar], since: float, what: str) -> None:
    remaining = since + RECOVERY_DEADLINE_SECONDS - time.monotonic()

    def all_pairs() -> bool:
        return all(_invoke(x, y.app_id) is None for x, y in itertools.permutations(sidecars, 2))

    wait_until(all_pairs, max(remaining, 0.1), what, interval=0.1)


@pytest.fixture(scope="module")
def chaos_home(tandem_home):
    # Mesh-wide 20 s certificates: rotation every 10 s, expiry soon after a missed one.
    (tandem_home / "config.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: daprsystem}\n"
        f"spec:\n  mtls: {{enabled: true, workloadCertTTL: {CERT_TTL_SECONDS}s}}\n"
    )
    return tandem_home


def test_the_mesh_survives_control_plane_crashes(chaos_home):
    home = chaos_home
    a = _echo_sidecar(home, "a")
    b = _echo_sidecar(home, "b")
    sidecars = [a, b]
    traffic = Traffic(home)
    try:
        wait_until(
            lambda: _invoke(a, "b") is None and _invoke(b, "a") is None, 30, "a and b to meet"
        )
        traffic.sidecars = [a, b]
        traffic.start()
        serials_before = {s.app_id: _serials(s) for s in sidecars}

        # Crash 1, and a third sidecar starts while the control plane is down.
        dead = _kill_control_plane(home)
        crashed_at = time.monotonic()
        c = _echo_sidecar(home, "c")
        sidecars.append(c)
        _wait_all_pairs(sidecars, crashed_at, "every pair to invoke every other after crash 1")
        traffic.sidecars = list(sidecars)
        first = _wait_restarted(home, dead)
        assert _control_plane_pid(home) == first  # the record names the live one only

        # Crash 2, a while later, with all three sidecars relying on it.
        wait_until(lambda: time.monotonic() - crashed_at > 20, 25, "crash 2's moment")
        dead = _kill_control_plane(home)
        second_crash = time.monotonic()
        _wait_restarted(home, dead)
        _wait_all_pairs(sidecars, second_crash, "every pair to invoke every other after crash 2")

        # 60 s after crash 1: certificates kept renewing, no new connection failed.
        seen: dict[str, set[str]] = {s.app_id: set() for s in sidecars}

        def watched_long_enough() -> bool:
            for s in sidecars:
                seen[s.app_id] |= _serials(s)
            return time.monotonic() - crashed_at > WATCH_AFTER_CRASH_SECONDS

        wait_until(watched_long_enough, WATCH_AFTER_CRASH_SECONDS + 15, "60 s", interval=2)
        traffic.stop()
        assert traffic.failures == []
        assert traffic.rounds > 20 and traffic.handshakes > 60
        for s in sidecars:
            renewed = seen[s.app_id] - serials_before.get(s.app_id, set())
            # 20 s certificates re-signed at half-life over ~60 s: several new ones.
            assert len(renewed) >= 4, (s.app_id, seen[s.app_id])

        # A deliberate stop is left alone, and `tandem list` says who lost the control plane.
        pid = _control_plane_pid(home)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _alive(pid), 10, "the control plane to stop")

        def listed() -> list[dict]:
            out = tandem_cli(home, "list", "--output", "json", check=True).stdout
            return list(json.loads(out))

        wait_until(
            lambda: {x["control_plane"] for x in listed()} == {"lost"}, 10, "every link lost"
        )
        table = tandem_cli(home, "list", check=True).stdout
        assert "control plane: stopped" in table
        assert _control_plane_pid(home) is None  # no watcher brought it back
        assert (home / "stopping").exists()
    finally:
        traffic.stop()
        for s in sidecars:
            s.stop()
