"""Bindings and jobs (issue 17): an output binding's round trip vs the target called
directly, and job trigger lateness at a steady rate vs the floor of a Python timer.

    python bench/bindings_jobs.py [--seconds 5] [--connections 1] [--jobs 500] [--rate 100]

- Output binding: one `tandem run` whose `bindings.http` component targets a minimal app;
  wrk POSTs `{"operation": "get"}` to `/v1.0/bindings/target` and, as the baselines, GETs
  the app directly and the sidecar's `healthz` (a runtime answer that does no work).
  Prints all three and the p50 difference and ratio to the direct call.
- Jobs: a second sidecar with an app that records when each `POST /job/<name>` arrives;
  ``--jobs`` one-shot jobs are scheduled with RFC 3339 due times ``1/--rate`` s apart
  (all scheduled before the first is due). Lateness = arrival at the app − due time.
  Baseline: the same due times slept for with asyncio timers in this process (what a timer
  on this machine gets anyway). Prints p50/p99 of both and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    TandemMachine,
    post_script,
    resources_folder,
    start_fast_app,
    wait_http,
    work_folder,
    wrk,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import free_port  # noqa: E402

APPS = Path(__file__).resolve().parent.parent / "tests" / "apps"
COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: target}}
spec:
  type: bindings.http
  version: v1
  metadata:
  - {{name: url, value: "http://127.0.0.1:{port}/x"}}
"""


def post(url: str, body: dict[str, object]) -> int:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timer_floor(dues: list[datetime]) -> list[float]:
    async def one(due: datetime) -> float:
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
        return (datetime.now(UTC) - due).total_seconds() * 1000

    return list(await asyncio.gather(*(one(d) for d in dues)))


def jobs(m: TandemMachine, work: Path, count: int, rate: float) -> None:
    log = work / "jobs.jsonl"
    port = free_port()
    http = m.run(
        "bench-jobs",
        "--app-port",
        str(port),
        "--",
        sys.executable,
        str(APPS / "binding_app.py"),
        str(port),
        str(log),
    )
    base = f"http://127.0.0.1:{http}/v1.0-alpha1/jobs"
    start = datetime.now(UTC) + timedelta(seconds=3 + count * 0.01)
    dues = [start + timedelta(seconds=i / rate) for i in range(count)]
    for i, due in enumerate(dues):
        stamp = due.isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert post(f"{base}/j{i}", {"dueTime": stamp}) == 204
    if datetime.now(UTC) >= start:
        sys.exit("bench: scheduling took longer than the head start; lower --jobs")
    floor = asyncio.run(timer_floor(dues))
    deadline = time.monotonic() + 60
    arrived: dict[str, float] = {}
    while len(arrived) < count and time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                entry = json.loads(line)
                if entry["path"].startswith("/job/j"):
                    arrived.setdefault(entry["path"].removeprefix("/job/"), entry["at"])
        time.sleep(0.2)
    if len(arrived) < count:
        sys.exit(f"bench: only {len(arrived)} of {count} jobs arrived")
    late = [(arrived[f"j{i}"] - due.timestamp()) * 1000 for i, due in enumerate(dues)]
    print(f"\njobs: {count} one-shot jobs due {1000 / rate:.0f} ms apart ({rate:.0f}/s)\n")
    print("| trigger | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    print(
        f"| asyncio timer in this process (floor) | {pct(floor, 0.5):.1f} | {pct(floor, 0.99):.1f} | {max(floor):.1f} |"
    )
    print(f"| job → app (`POST /job/<name>`) | {pct(late, 0.5):.1f} | {pct(late, 0.99):.1f} | {max(late):.1f} |")  # fmt: skip
    print(
        f"\nmean lateness {statistics.mean(late):.1f} ms; p50 job / p50 floor {pct(late, 0.5) / max(pct(floor, 0.5), 0.001):.0f}×"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--rate", type=float, default=100.0)
    a = ap.parse_args()
    app, app_port = start_fast_app()
    try:
        with work_folder("tbb") as work, TandemMachine() as m:
            resources = resources_folder(work, binding=COMPONENT.format(port=app_port))
            script = post_script(work / "post.lua", '{"operation":"get"}')
            http = m.run("bench-bindings", "--resources-path", str(resources))
            url = f"http://127.0.0.1:{http}/v1.0/bindings/target"
            wait_http(f"http://127.0.0.1:{app_port}/x", 200)
            assert post(url, {"operation": "get"}) == 200
            c = a.connections
            direct = wrk(
                "direct: GET app",
                f"http://127.0.0.1:{app_port}/x",
                connections=c,
                seconds=a.seconds,
            )
            floor = wrk("sidecar: GET /v1.0/healthz (runtime floor)", f"http://127.0.0.1:{http}/v1.0/healthz", connections=c, seconds=a.seconds)  # fmt: skip
            binding = wrk("bindings.http get → same app", url, connections=c, seconds=a.seconds, script=script)  # fmt: skip
            print(f"\noutput binding round trip, connections={c} seconds={a.seconds}\n")
            print("| path | req/s | p50 ms | p90 ms | p99 ms |")
            print("|---|---|---|---|---|")
            print(direct.row())
            print(floor.row())
            print(binding.row())
            print(
                f"\nadded p50 {binding.p50_ms - direct.p50_ms:+.3f} ms; "
                f"req/s binding / direct {binding.rps / direct.rps:.2f}"
            )
            jobs(m, work, a.jobs, a.rate)
    finally:
        app.terminate()


if __name__ == "__main__":
    main()
