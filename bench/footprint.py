"""Private memory (RssAnon) of one sidecar: every process `tandem run` starts for an app
(itself, the runtime, Envoy) idle and after 10,000 mixed requests, and the control plane;
beside the same-run baseline of a bare Python interpreter (what any Python process costs)
and the targets of issue 21 (sidecar ≤ 64 MB idle, ≤ 96 MB loaded; control plane ≤ 40 MB).

Usage: python bench/footprint.py [--app]

``--app`` gives the sidecar an app (the loopback HTTP app of bench/_common.py on
``--app-port``): the runtime then opens its app channel at start (``GET /dapr/subscribe``,
``/dapr/config``). The app's own process is not counted.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _common import FAST_APP, TandemMachine

from tandem.cli.ports import free_port

TARGET_IDLE_MB, TARGET_LOADED_MB, TARGET_CP_MB = 64, 96, 40


def rss_anon_mb(pid: int) -> float:
    text = (Path("/proc") / str(pid) / "status").read_text()
    match = re.search(r"RssAnon:\s+(\d+)", text)
    return int(match.group(1)) / 1024 if match else 0.0


def children(pid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(proc.name))
    return out


def sidecar_processes(run_pid: int) -> dict[str, int]:
    named = {"tandem run": run_pid}
    for child in children(run_pid):
        cmd = (Path("/proc") / str(child) / "cmdline").read_bytes()
        if b"tandem.ext_proc" in cmd:
            named["runtime"] = child
        elif b"envoy" in cmd.split(b"\0")[0]:
            named["envoy"] = child
    return named


def traffic(http: int, n: int) -> None:
    base = f"http://127.0.0.1:{http}"
    for i in range(n):
        if i % 3 == 0:
            body = json.dumps([{"key": f"k{i % 100}", "value": i}]).encode()
            req = urllib.request.Request(f"{base}/v1.0/state/statestore", data=body)
        elif i % 3 == 1:
            req = urllib.request.Request(f"{base}/v1.0/state/statestore/k{i % 100}")
        else:
            req = urllib.request.Request(f"{base}/v1.0/publish/pubsub/bench", data=b"{}")
            req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()


def report(name: str, procs: dict[str, int], baseline: float) -> float:
    total = 0.0
    for role, pid in procs.items():
        mb = rss_anon_mb(pid)
        total += mb
        print(f"  {role:<11} {mb:6.1f} MB  ({mb / baseline:.1f}× a bare interpreter)")
    print(f"  {name} total {total:.1f} MB")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", action="store_true", help="give the sidecar an app")
    args = parser.parse_args()
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.5)
    baseline = rss_anon_mb(bare.pid)
    bare.kill()
    print(f"baseline: a bare Python interpreter {baseline:.1f} MB")
    with TandemMachine() as machine:
        extra: list[str] = []
        if args.app:
            app_port = free_port()
            extra = ["--app-port", str(app_port), "--", sys.executable, "-c", FAST_APP]
            extra.append(str(app_port))
        ports = machine.run_sidecar("footprint", *extra)
        time.sleep(3)  # idle: start-up allocations settled
        procs = sidecar_processes(machine.procs[-1].pid)
        print("idle:")
        idle = report("sidecar", procs, baseline)
        traffic(ports.http, 10_000)
        print("after 10,000 mixed requests (state set/get, publish):")
        loaded = report("sidecar", procs, baseline)
        cp_pid = json.loads((machine.home / "controlplane.json").read_text())["pid"]
        cp = rss_anon_mb(cp_pid)
        print(f"control plane {cp:.1f} MB")
    print(
        f"ratio to target: idle {idle / TARGET_IDLE_MB:.2f}, loaded {loaded / TARGET_LOADED_MB:.2f}"
        f", control plane {cp / TARGET_CP_MB:.2f} (≤ 1.00 meets it)"
    )


if __name__ == "__main__":
    main()
