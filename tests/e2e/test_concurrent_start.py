"""Sidecars started at the same moment never share a port they did not ask for."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
from harness import wait_until


def test_sidecars_started_together_get_distinct_ports_and_reach_each_other(tandem_home):
    env = {**os.environ, "TANDEM_HOME": str(tandem_home)}
    outputs = {app_id: tandem_home / f"{app_id}.out" for app_id in ("twin1", "twin2", "twin3")}
    procs = []
    for app_id, out in outputs.items():
        with open(out, "wb") as sink:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tandem.cli.main", "run", "--app-id", app_id],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )

    def started() -> list[dict] | None:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(
                    "a sidecar exited:\n" + "\n".join(o.read_text() for o in outputs.values())
                )
        files = sorted((tandem_home / "apps").glob("twin*.json"))
        return [json.loads(f.read_text()) for f in files] if len(files) == 3 else None

    try:
        records = wait_until(started, 60, "three sidecars to start")
        seen: list[int] = []
        for r in records:
            seen += [r["http_port"], r["grpc_port"], r["internal_port"], r["metrics_port"]]
        assert len(seen) == len(set(seen)), f"ports shared between sidecars: {records}"
        # Every call lands on the sidecar it was meant for.
        for r in records:
            md = httpx.get(f"http://127.0.0.1:{r['http_port']}/v1.0/metadata", timeout=5).json()
            assert md["id"] == r["app_id"]
        first = records[0]
        for _ in range(20):
            resp = httpx.get(
                f"http://127.0.0.1:{first['http_port']}/v1.0/invoke/{records[1]['app_id']}/method/x",
                timeout=5,
            )
            # twin2 has no app: its own Envoy answers, as twin2 (never twin1 posing as it).
            assert resp.headers.get("x-tandem-callee") == records[1]["app_id"], resp.text
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
