"""Workflows: completed workflows/s for a chain of 3 activities and a fan-out of 10, beside a
same-run baseline of plain state writes through the same sidecar.

    python bench/workflows.py [--count 200] [--seconds 5]

One sidecar (the embedded ``statestore`` holds the histories) and one app running the
official SDK's ``WorkflowRuntime`` with trivial activities, so the figures are the
sidecar's durable machinery plus the SDK's own replay, not the activities' work. The
bench schedules ``--count`` instances at once from 8 client threads and times until the
last completes. A chain commits 5 times (start and 4 turns; an activity's result is
committed by the turn that consumes it); the baseline is plain single-item state writes/s
(wrk, 8 connections), divided by 5 into the workflows/s those writes alone would allow.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import TandemMachine, wrk

APP = r"""
import signal, threading
from dapr.ext.workflow import WorkflowRuntime, when_all
wfr = WorkflowRuntime()
@wfr.activity(name="inc")
def inc(ctx, n):
    return n + 1
@wfr.workflow(name="chain")
def chain(ctx, n):
    n = yield ctx.call_activity(inc, input=n)
    n = yield ctx.call_activity(inc, input=n)
    n = yield ctx.call_activity(inc, input=n)
    return n
@wfr.workflow(name="fanout")
def fanout(ctx, n):
    return sum((yield when_all([ctx.call_activity(inc, input=i) for i in range(n)])))
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
wfr.start()
stop.wait()
wfr.shutdown()
"""

WRITE = 'wrk.method = "POST"\nwrk.body = \'[{"key":"bench","value":"v"}]\'\nwrk.headers["Content-Type"] = "application/json"\n'
WRITES_PER_CHAIN = 5


def run_batch(client: object, name: str, arg: int, count: int, tag: str) -> float:
    ids = [f"{tag}-{i}" for i in range(count)]
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: client.schedule_new_workflow(workflow=name, input=arg, instance_id=i),  # type: ignore[attr-defined]
                ids,
            )
        )

        def wait(i: str) -> None:
            state = client.wait_for_workflow_completion(i, timeout_in_seconds=300)  # type: ignore[attr-defined]
            if state is None or state.runtime_status.name != "COMPLETED":
                sys.exit(f"bench: {i} did not complete: {state}")

        list(pool.map(wait, ids))
    return count / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=5)
    a = ap.parse_args()
    from dapr.ext.workflow import DaprWorkflowClient

    with TandemMachine() as machine:
        ports = machine.run_sidecar("wfbench")
        app_file = Path(tempfile.mkdtemp(prefix="wfb")) / "app.py"
        app_file.write_text(APP)
        env = {**os.environ, "DAPR_GRPC_PORT": str(ports.grpc), "DAPR_HTTP_PORT": str(ports.http)}
        app = subprocess.Popen([sys.executable, str(app_file)], env=env, stderr=subprocess.DEVNULL)
        try:
            client = DaprWorkflowClient(host="127.0.0.1", port=str(ports.grpc))
            run_batch(client, "chain", 0, 20, "warm")  # the worker is connected and warm
            rows = []
            for rnd in (1, 2):
                chain = run_batch(client, "chain", 0, a.count, f"c{rnd}")
                fan = run_batch(client, "fanout", 10, a.count // 4, f"f{rnd}")
                writes = wrk(
                    "state SAVE",
                    f"http://127.0.0.1:{ports.http}/v1.0/state/statestore",
                    connections=8,
                    seconds=a.seconds,
                    script=_script(WRITE),
                )
                rows.append((rnd, chain, fan, writes.rps))
            client.close()
        finally:
            app.terminate()
            app.wait(30)
    print(
        "| round | chain of 3 (wf/s) | fan-out of 10 (wf/s) | state writes/s | writes/s ÷ 5 | chain ÷ baseline |"
    )
    print("|---|---|---|---|---|---|")
    for rnd, chain, fan, w in rows:
        base = w / WRITES_PER_CHAIN
        print(
            f"| {rnd} | {chain:,.1f} | {fan:,.1f} | {w:,.0f} | {base:,.1f} | {chain / base:.2f}× |"
        )


def _script(text: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(text)
    return f.name


if __name__ == "__main__":
    main()
