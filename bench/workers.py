"""Runtime workers: a sidecar with ``--runtime-workers 2`` against one with 1, in one run.

    python bench/workers.py [--seconds 5] [--concurrency 16] [--rounds 3] [--transport http]

Both sidecars run side by side over the same Redis (state.redis, pubsub.redis); the rounds
alternate between them so the box's noise falls on both alike. Per round and sidecar, wrk
with ``--concurrency`` connections does ``GET /v1.0/state/statestore/k``, a one-item save
and a publish; reported: req/s, p50, the sidecar's CPU per request (every process under its
`tandem run`) in all and by part (Envoy, owner runtime, worker, other), and the
private memory (RssAnon) of those processes idle. Prints medians and the ratio 2 workers /
1 worker. A second worker can only help where a core is free for it:
on a 2-core box it competes with Envoy and wrk for the same cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import (
    Samples,
    TandemMachine,
    post_script,
    resources_folder,
    role,
    tree_cpu,
    tree_cpu_by_role,
    tree_private_mb,
    work_folder,
    wrk,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import run_redis  # noqa: E402

COMPONENTS = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: statestore}}
spec:
  type: state.redis
  version: v1
  metadata: [{{name: redisHost, value: '{address}'}}]
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: pubsub}}
spec:
  type: pubsub.redis
  version: v1
  metadata: [{{name: redisHost, value: '{address}'}}]
"""


def part(cmd: str) -> str:
    """Which part of the sidecar a process is, from its command line."""
    of = role(cmd)
    if of == "runtime":
        return "worker" if "--worker-index" in cmd else "owner runtime"
    return of if of == "envoy" else "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--transport", choices=("http", "ext_proc"), default="http")
    args = ap.parse_args()
    rows = Samples()
    with (
        work_folder("bwk") as work,
        run_redis(work / "redis") as server,
        TandemMachine() as machine,
    ):
        save = post_script(work / "save.lua", '[{"key": "k", "value": {"n": 1}}]')
        publish = post_script(work / "publish.lua", '{"n": 1}')
        resources = resources_folder(work, components=COMPONENTS.format(address=server.address))
        sidecars: dict[int, tuple[str, int]] = {}
        for workers in (1, 2):
            port = machine.run(
                f"workers-{workers}",
                "--resources-path",
                str(resources),
                "--api-transport",
                args.transport,
                "--runtime-workers",
                str(workers),
            )
            sidecars[workers] = (f"http://127.0.0.1:{port}/v1.0", machine.procs[-1].pid)
        for workers, (base, root) in sidecars.items():
            wrk("warm-up", f"{base}/state/statestore", seconds=1, script=save)
            rows.add(f"{workers}: private memory idle, MB", tree_private_mb([root]))
        for _ in range(args.rounds):
            for workers, (base, root) in sidecars.items():
                for op, url, script in (
                    ("GET", f"{base}/state/statestore/k", None),
                    ("SAVE", f"{base}/state/statestore", save),
                    ("PUBLISH", f"{base}/publish/pubsub/bench", publish),
                ):
                    before, parts = tree_cpu([root]), tree_cpu_by_role([root], part)
                    r = wrk(
                        op,
                        url,
                        connections=args.concurrency,
                        seconds=args.seconds,
                        script=script,
                    )
                    used = tree_cpu([root]) - before
                    requests = r.rps * args.seconds
                    for of, seconds in tree_cpu_by_role([root], part).items():
                        spent = seconds - parts.get(of, 0.0)
                        rows.add(f"{workers}: {op} CPU µs/req, {of}", spent * 1e6 / requests)
                    rows.add(f"{workers}: {op} req/s", r.rps)
                    rows.add(f"{workers}: {op} p50 ms", r.p50_ms)
                    rows.add(f"{workers}: {op} CPU µs/req", used * 1e6 / requests)
    med = rows.medians()
    print(
        f"| figure (median of {args.rounds}, {args.concurrency} in flight, "
        f"{args.transport} door) | 1 worker | 2 workers | 2 / 1 |"
    )
    print("|---|---|---|---|")
    figures = [k.split(": ", 1)[1] for k in med if k.startswith("1: ")]
    figures += [k.split(": ", 1)[1] for k in med if k.startswith("2: ") and "worker" in k]
    for figure in figures:
        one, two = med.get(f"1: {figure}"), med[f"2: {figure}"]
        if one is None:  # a worker's share: only with 2
            print(f"| {figure} | – | {two:,.2f} | |")
        else:  # a part idle with 1 worker (no CPU tick in the run) has no ratio
            ratio = f"{two / one:.2f}×" if one else ""
            print(f"| {figure} | {one:,.2f} | {two:,.2f} | {ratio} |")


if __name__ == "__main__":
    main()
