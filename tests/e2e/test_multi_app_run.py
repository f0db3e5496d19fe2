"""`tandem run -f` (issue 22): a Dapr multi-app run template starts every app with its
sidecar; apps reach each other by invocation; each app's output is shown behind its id and
kept in its .dapr/logs; Ctrl-C stops every process the run started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from harness import APPS, distinct_free_ports, tandem_cli, wait_until

TEMPLATE = """\
version: 1
common:
  env:
    GREETING: hello
apps:
  - appID: mr-back
    appDirPath: ./back/
    appPort: {back_port}
    daprHTTPPort: {back_http}
    command: ["{python}", "{echo}", "{back_port}"]
  - appID: mr-front
    appDirPath: ./front/
    daprHTTPPort: {front_http}
    appLogDestination: console
    command: ["{python}", "-c", "import os, time; print('front says', os.environ['GREETING'], flush=True); time.sleep(600)"]
"""


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(proc.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_template_runs_every_app_and_ctrl_c_stops_them_all(tandem_home, tmp_path):
    back_port, back_http, front_http = distinct_free_ports(3)
    for d in ("back", "front"):
        (tmp_path / d).mkdir()
    (tmp_path / "dapr.yaml").write_text(
        TEMPLATE.format(
            back_port=back_port,
            back_http=back_http,
            front_http=front_http,
            python=sys.executable,
            echo=APPS / "echo_app.py",
        )
    )
    out = tmp_path / "run.out"
    with open(out, "wb") as sink:
        run = subprocess.Popen(
            [sys.executable, "-m", "tandem.cli.main", "run", "-f", str(tmp_path)],
            env={**os.environ, "TANDEM_HOME": str(tandem_home)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        front = f"http://127.0.0.1:{front_http}"
        wait_until(
            lambda: _get(f"{front}/v1.0/invoke/mr-back/method/hi") == 200,
            60,
            "front's sidecar to reach back's app",
        )
        # back's runtime reports ready once its app start-up (subscriptions) is done.
        wait_until(
            lambda: _get(f"http://127.0.0.1:{back_http}/v1.0/healthz") == 204,
            30,
            "back's sidecar to be healthy",
        )
        listed = tandem_cli(tandem_home, "list", "--output", "json", check=True).stdout
        assert {"mr-back", "mr-front"} <= {a["app_id"] for a in json.loads(listed)}
        wait_until(lambda: "front says hello" in out.read_text(), 30, "front's output")
        line = next(ln for ln in out.read_text().splitlines() if "front says hello" in ln)
        assert line.startswith("mr-front")  # behind its app id
        # back's output also went to its .dapr/logs (appLogDestination default).
        logs = list((tmp_path / "back" / ".dapr" / "logs").glob("mr-back_app_*.log"))
        assert logs and "sidecar mr-back ready" in logs[0].read_text()
        assert not (tmp_path / "front" / ".dapr" / "logs").exists()  # console only
        started = descendants(run.pid)
        assert len(started) >= 8  # two `tandem run`s, each with runtime, Envoy and app
        run.send_signal(signal.SIGINT)
        assert run.wait(60) == 0
        # The control plane is the machine's, detached by design: it outlives the run.
        cp = json.loads((tandem_home / "controlplane.json").read_text())["pid"]
        left = started - {cp}
        wait_until(lambda: not [p for p in left if alive(p)], 15, "every process to stop")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0
