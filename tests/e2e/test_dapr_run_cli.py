"""`tandem run` takes a `dapr run` command line as `dapr run` does: no --app-id needed, random
ports for every port not given, Dapr's extra flags honoured or noted, start-up warnings on the
console, exit 0 after `tandem stop`, and a graceful shutdown period for the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from harness import APPS, start_sidecar, tandem_cli, wait_until

# A setting Tandem cannot honour, which it must say on the console at start.
RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: checkout-breaker
spec:
  policies:
    circuitBreakers:
      cb: {maxRequests: 2, timeout: 30s, trip: consecutiveFailures > 5}
  targets:
    apps:
      cart: {circuitBreaker: cb}
"""


def _tandem(home: Path, *args: str, out: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TANDEM_HOME": str(home)}
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tandem.cli.main", *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _stop(home: Path, app_id: str) -> subprocess.CompletedProcess[str]:
    return tandem_cli(home, "stop", "--app-id", app_id, timeout=90)


def test_dapr_run_line_without_app_id_or_ports(tandem_home, tmp_path):
    res = tmp_path / "components"
    res.mkdir()
    (res / "resiliency.yaml").write_text(RESILIENCY)
    out = tmp_path / "run.out"
    proc = _tandem(
        tandem_home,
        "run",
        "--resources-path",
        str(res),
        "--placement-host-address",
        "localhost:50005",
        "--",
        sys.executable,
        "-c",
        "import os, time; print('app env', os.environ['APP_ID'], os.environ['DAPR_HTTP_PORT'],"
        " flush=True); time.sleep(600)",
        out=out,
    )
    try:

        def app_line() -> list[str] | None:
            if proc.poll() is not None:
                raise AssertionError(f"tandem run exited early:\n{out.read_text()}")
            lines = [ln for ln in out.read_text().splitlines() if ln.startswith("app env ")]
            return lines[0].split()[2:] if lines else None

        app_id, http_port = wait_until(app_line, 60, "the app to start")
        record = json.loads((tandem_home / "apps" / f"{app_id}.json").read_text())
        assert str(record["http_port"]) == http_port
        # Random free ports, not daprd's fixed defaults, for every port not given.
        ports = {record[k] for k in ("http_port", "grpc_port", "internal_port", "metrics_port")}
        assert len(ports) == 4 and not ports & {3500, 50001, 50002, 9090}, record
        md = httpx.get(f"http://127.0.0.1:{http_port}/v1.0/metadata", timeout=5).json()
        assert md["id"] == app_id
        text = out.read_text()
        # The YAML warning and the flag note reach the console, not only the runtime log.
        assert "circuitBreakers.cb.maxRequests is ignored for invocations" in text, text
        assert "--placement-host-address" in text and "ignored" in text, text

        stopped = _stop(tandem_home, app_id)
        assert stopped.returncode == 0, stopped.stderr
        assert proc.wait(60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_run_file_is_refused_clearly(tandem_home, tmp_path):
    out = tmp_path / "f.out"
    proc = _tandem(tandem_home, "run", "-f", str(tmp_path / "dapr.yaml"), out=out)
    assert proc.wait(30) == 2
    text = out.read_text()
    assert f"{tmp_path / 'dapr.yaml'}: no multi-app run file there" in text, text


def _graceful(tandem_home: Path, app_id: str, seconds: str, delay: str, *extra: str):
    s = start_sidecar(
        tandem_home,
        app_id,
        "--dapr-graceful-shutdown-seconds",
        seconds,
        *extra,
        command=[sys.executable, str(APPS / "graceful_app.py")],
        env={"DELAY": delay},
    )
    wait_until(lambda: f"app {app_id} up" in s.text(), 30, "the app to start")
    return s


def test_graceful_shutdown_lets_the_app_finish_through_its_sidecar(tandem_home):
    s = _graceful(tandem_home, "slow-stopper", "30", "1")
    stopped = _stop(tandem_home, "slow-stopper")
    assert stopped.returncode == 0, stopped.stderr
    assert s.proc.wait(60) == 0, s.text()
    assert "saved after SIGTERM: 204" in s.text(), s.text()


def test_graceful_shutdown_period_is_a_limit(tandem_home):
    # Also Dapr's quietest log level, which Envoy and the runtime must both accept.
    s = _graceful(tandem_home, "too-slow", "0.5", "20", "--log-level", "panic")
    started = time.monotonic()
    stopped = _stop(tandem_home, "too-slow")
    assert stopped.returncode == 0, stopped.stderr
    assert s.proc.wait(60) == 0, s.text()
    # Stopped well before the app's own 20 s; it never got to save.
    assert time.monotonic() - started < 15
    assert "saved after SIGTERM" not in s.text()
