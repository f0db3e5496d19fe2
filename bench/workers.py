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
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _common import TandemMachine, tree_cpu, wrk

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
SAVE_LUA = """
wrk.method = "POST"
wrk.body = '[{"key": "k", "value": {"n": 1}}]'
wrk.headers["Content-Type"] = "application/json"
"""
PUBLISH_LUA = """
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"
"""


def tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rpartition(")")[2].split()[1]
                )
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        found += frontier
    return found


def kind(pid: int) -> str:
    """Which part of the sidecar ``pid`` is, from its command line."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    if b"tandem.ext_proc" in cmd:
        return "worker" if b"--worker-index" in cmd else "owner runtime"
    if b"envoy" in cmd:
        return "envoy"
    return "other"


def cpu_by_kind(root: int) -> dict[str, float]:
    """CPU seconds used so far, by part of the sidecar (every process under ``root``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        part = kind(pid)
        out[part] = out.get(part, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def private_mb(root: int) -> float:
    total = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--transport", choices=("http", "ext_proc"), default="http")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bwk", dir="/tmp"))
    save, publish = work / "save.lua", work / "publish.lua"
    save.write_text(SAVE_LUA)
    publish.write_text(PUBLISH_LUA)
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    with run_redis(work / "redis") as server, TandemMachine() as machine:
        resources = work / "resources"
        resources.mkdir()
        (resources / "components.yaml").write_text(COMPONENTS.format(address=server.address))
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
            wrk("warm-up", f"{base}/state/statestore", seconds=1, script=str(save))
            add(f"{workers}: private memory idle, MB", private_mb(root))
        for _ in range(args.rounds):
            for workers, (base, root) in sidecars.items():
                for op, url, script in (
                    ("GET", f"{base}/state/statestore/k", None),
                    ("SAVE", f"{base}/state/statestore", str(save)),
                    ("PUBLISH", f"{base}/publish/pubsub/bench", str(publish)),
                ):
                    before, parts = tree_cpu([root]), cpu_by_kind(root)
                    r = wrk(
                        op,
                        url,
                        connections=args.concurrency,
                        seconds=args.seconds,
                        script=script,
                    )
                    used = tree_cpu([root]) - before
                    requests = r.rps * args.seconds
                    for part, seconds in cpu_by_kind(root).items():
                        spent = seconds - parts.get(part, 0.0)
                        add(f"{workers}: {op} CPU µs/req, {part}", spent * 1e6 / requests)
                    add(f"{workers}: {op} req/s", r.rps)
                    add(f"{workers}: {op} p50 ms", r.p50_ms)
                    add(f"{workers}: {op} CPU µs/req", used * 1e6 / requests)
    med = {k: statistics.median(v) for k, v in rows.items()}
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
        else:
            print(f"| {figure} | {one:,.2f} | {two:,.2f} | {two / one:.2f}× |")


if __name__ == "__main__":
    main()
