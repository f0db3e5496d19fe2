"""The Dapr gRPC API vs the HTTP door on one sidecar: GetState, SaveState, PublishEvent.

    python bench/grpc_api.py [--seconds 5] [--inflight 1 16] [--rounds 3]
                             [--ops GetState ...] [--with-grpc-aio] [--profile DIR]

One `tandem run` (API transport http) with in-memory state and pub/sub, so the API path is
what is measured rather than a store; its unary gRPC calls go through Envoy's reverse bridge
to the runtime's HTTP door. ``--with-grpc-aio`` adds an ext_proc sidecar whose gRPC calls
still reach grpc.aio (the path before the bridge), as a third door ``grpc.aio``. The same C client (h2load) drives both doors: the HTTP
door over HTTP/1.1 (16 in flight = 16 connections), the gRPC API over one HTTP/2 connection
(16 in flight = 16 concurrent streams, as an SDK's channel does) with the operation's
protobuf request framed as gRPC. Each round measures every operation on both doors back to
back (so drift hits both alike); the table is the median over rounds.

Client cost is measured and removed: h2load's own CPU time per call (from getrusage of the
child) is subtracted from the wall time per call, giving "server time per call". The CPU
time the sidecar's Envoy and runtime spend per call (from /proc) is printed too: on a busy
machine it is the steadier measure of what a call costs. Printed ratios: HTTP server time /
gRPC server time (goal ≥ 90 %), the same for sidecar CPU, and gRPC p50 − HTTP p50 (goal
≤ +0.05 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from _common import TandemMachine, tree_cpu
from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import dapr_pb2, pubsub_pb2, state_pb2
from google.protobuf import message_factory

VALUE = b'{"order":7,"total":42.5,"items":["a","b"]}'
SAVE_BODY = b'[{"key":"k","value":{"order":7,"total":42.5,"items":["a","b"]}}]'
RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore}
spec: {type: state.in-memory, version: v1}
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec: {type: pubsub.in-memory, version: v1}
"""
GRPC_PREFIX = "/dapr.proto.runtime.v1.Dapr/"


@dataclass(frozen=True)
class Op:
    name: str
    http_path: str
    http_body: bytes | None
    grpc_method: str
    grpc_message: bytes


OPS = [
    Op("GetState", "/v1.0/state/statestore/k", None, "GetState",
       state_pb2.GetStateRequest(store_name="statestore", key="k").SerializeToString()),
    Op("SaveState", "/v1.0/state/statestore", SAVE_BODY, "SaveState",
       state_pb2.SaveStateRequest(
           store_name="statestore",
           states=[common_pb2.StateItem(key="k", value=VALUE)],
       ).SerializeToString()),
    Op("PublishEvent", "/v1.0/publish/pubsub/orders", VALUE, "PublishEvent",
       pubsub_pb2.PublishEventRequest(
           pubsub_name="pubsub", topic="orders", data=VALUE, data_content_type="application/json"
       ).SerializeToString()),
]  # fmt: skip


@dataclass(frozen=True)
class Run:
    calls: int
    wall_s: float
    client_cpu_s: float
    p50_ms: float
    p90_ms: float
    sidecar_cpu_s: float
    runtime_cpu_s: float

    @property
    def rps(self) -> float:
        return self.calls / self.wall_s

    @property
    def per_call_ms(self) -> float:
        return self.wall_s / self.calls * 1000

    @property
    def client_ms(self) -> float:
        return self.client_cpu_s / self.calls * 1000

    @property
    def sidecar_cpu_ms(self) -> float:
        """CPU time of the sidecar's Envoy and runtime per call: what a call costs the
        sidecar, much less disturbed than wall time by other work on a busy machine."""
        return self.sidecar_cpu_s / self.calls * 1000

    @property
    def runtime_cpu_ms(self) -> float:
        return self.runtime_cpu_s / self.calls * 1000

    @property
    def server_ms(self) -> float:
        """Time per call with the client's own CPU time per call taken out."""
        return self.per_call_ms - self.client_ms


def need_h2load() -> str:
    path = shutil.which("h2load")
    if path is None:
        sys.exit("bench: h2load is required (Debian: apt-get install nghttp2-client)")
    return path


def h2load(url: str, *, inflight: int, seconds: int, grpc: bool, body: Path | None,
           work: Path, sidecar: list[int],
           profile: tuple[int, Path] | None = None) -> Run:  # fmt: skip
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    argv = [need_h2load(), "-D", str(seconds), "--warm-up-time", "1", f"--log-file={log}"]
    if grpc:
        argv += ["-c1", f"-m{inflight}", "-H", "content-type: application/grpc",
                 "-H", "te: trailers"]  # fmt: skip
    else:
        argv += ["--h1", f"-c{inflight}", "-m1"]
        if body is not None:
            argv += ["-H", "content-type: application/json"]
    if body is not None:
        argv += ["-d", str(body)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sidecar_before = tree_cpu(sidecar)
    runtime_before = tree_cpu(sidecar[:1])
    start = time.perf_counter()
    spy = None
    if profile is not None:
        # Samples the runtime (not the client) while h2load runs; raw collapsed stacks.
        spy = subprocess.Popen(
            ["py-spy", "record", "-p", str(profile[0]), "-d", str(seconds), "-r", "250",
             "-f", "raw", "--nonblocking", "-o", str(profile[1])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    if spy is not None:
        spy.wait(30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sidecar_cpu = tree_cpu(sidecar) - sidecar_before
    runtime_cpu = tree_cpu(sidecar[:1]) - runtime_before
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line.split("\t") for line in log.read_text().splitlines() if line]
    bad = [r for r in lines if not r[1].startswith("2")]
    if bad or " 0 failed" not in out:
        sys.exit(f"bench: {url}: failed requests\n{out}")
    # The log holds the measured phase only; its span is the wall time of those calls.
    starts = [int(r[0]) for r in lines]
    ends = [int(r[0]) + int(r[2]) for r in lines]
    wall = (max(ends) - min(starts)) / 1e6
    lat = sorted(int(r[2]) / 1000 for r in lines)
    # h2load's CPU covers its warm-up second too: charge it pro rata to the measured calls.
    measured_share = wall / max(time.perf_counter() - start, wall)
    return Run(
        calls=len(lines),
        wall_s=wall,
        client_cpu_s=cpu * measured_share,
        p50_ms=lat[len(lat) // 2],
        p90_ms=lat[int(len(lat) * 0.9)],
        sidecar_cpu_s=sidecar_cpu * measured_share,
        runtime_cpu_s=runtime_cpu * measured_share,
    )


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def check_grpc_answers(grpc_port: int) -> None:
    """h2load only sees HTTP 200: make sure every gRPC call really succeeds once."""
    import grpc
    from dapr.proto.runtime.v1 import dapr_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        for op in OPS:
            method = getattr(stub, op.grpc_method)
            descriptor = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods_by_name
            request_type = message_factory.GetMessageClass(descriptor[op.grpc_method].input_type)
            method(request_type.FromString(op.grpc_message), timeout=10)


def child_pid(m: TandemMachine, pattern: str) -> int:
    """A process the last `tandem run` started: its runtime (``tandem.ext_proc``) or Envoy."""
    parent = m.procs[-1].pid
    out = subprocess.run(["pgrep", "-P", str(parent), "-f", pattern],
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    if not out:
        sys.exit(f"bench: no {pattern} process under tandem run {parent}")
    return int(out[0])


def seed(http_port: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1.0/state/statestore",
        data=SAVE_BODY,
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204, r.status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--inflight", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", nargs="+", default=[op.name for op in OPS])
    ap.add_argument(
        "--with-grpc-aio",
        action="store_true",
        help="also measure the gRPC API of an ext_proc sidecar, whose unary calls reach "
        "grpc.aio (the path before the bridge)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        help="also sample the runtime with py-spy during each first-round run (raw stacks here)",
    )
    a = ap.parse_args()
    if a.profile is not None:
        a.profile.mkdir(parents=True, exist_ok=True)
        if shutil.which("py-spy") is None:
            sys.exit("bench: --profile needs py-spy on PATH (pip install py-spy)")
    work = Path(tempfile.mkdtemp(prefix="tbg", dir="/tmp"))
    resources = work / "resources"
    resources.mkdir()
    (resources / "components.yaml").write_text(RESOURCES)
    ops = [op for op in OPS if op.name in a.ops]
    bodies: dict[tuple[str, str], Path] = {}
    for op in ops:
        if op.http_body is not None:
            bodies[(op.name, "http")] = work / f"{op.name}.json"
            bodies[(op.name, "http")].write_bytes(op.http_body)
        bodies[(op.name, "grpc")] = work / f"{op.name}.grpc"
        bodies[(op.name, "grpc")].write_bytes(grpc_frame(op.grpc_message))
    stack = contextlib.ExitStack()
    try:
        m = stack.enter_context(TandemMachine())
        ports = m.run_sidecar(
            "bench-grpc-api", "--resources-path", str(resources), "--api-transport", "http"
        )
        seed(ports.http)
        check_grpc_answers(ports.grpc)
        runtime = child_pid(m, "tandem.ext_proc")
        pids = [runtime, child_pid(m, "_bin/envoy ")]
        doors = {"http": (ports.http, pids), "grpc": (ports.grpc, pids)}
        if a.with_grpc_aio:
            aio = m.run_sidecar(
                "bench-grpc-aio", "--resources-path", str(resources), "--api-transport", "ext_proc"
            )
            seed(aio.http)
            check_grpc_answers(aio.grpc)
            doors["grpc.aio"] = (
                aio.grpc,
                [child_pid(m, "tandem.ext_proc"), child_pid(m, "_bin/envoy ")],
            )
        for inflight in a.inflight:
            runs: dict[tuple[str, str], list[Run]] = {}
            for round_no in range(a.rounds):
                for op in ops:
                    for door, (port, sidecar) in doors.items():
                        grpc = door != "http"
                        path = GRPC_PREFIX + op.grpc_method if grpc else op.http_path
                        run = h2load(
                            f"http://127.0.0.1:{port}{path}",
                            inflight=inflight,
                            seconds=a.seconds,
                            grpc=grpc,
                            body=bodies.get((op.name, "grpc" if grpc else "http")),
                            work=work,
                            sidecar=sidecar,
                            profile=(
                                (runtime, a.profile / f"{op.name}-{door}-{inflight}.txt")
                                if a.profile is not None and round_no == 0 and door != "grpc.aio"
                                else None
                            ),
                        )
                        runs.setdefault((op.name, door), []).append(run)
            report(inflight, a.seconds, a.rounds, ops, runs, list(doors))
    finally:
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


def _median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def report(inflight: int, seconds: int, rounds: int, ops: list[Op],
           runs: dict[tuple[str, str], list[Run]], doors: list[str]) -> None:  # fmt: skip
    print(f"\nin flight={inflight} seconds={seconds} rounds={rounds} (medians)\n")
    print(
        "| op | door | req/s | p50 ms | p90 ms | client ms/call | server ms/call "
        "| sidecar CPU ms/call | of it runtime |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for op in ops:
        for door in doors:
            rs = runs[(op.name, door)]
            print(
                f"| {op.name} | {door} | {_median(rs, 'rps'):,.0f} | {_median(rs, 'p50_ms'):.3f} "
                f"| {_median(rs, 'p90_ms'):.3f} | {_median(rs, 'client_ms'):.3f} "
                f"| {_median(rs, 'server_ms'):.3f} | {_median(rs, 'sidecar_cpu_ms'):.3f} "
                f"| {_median(rs, 'runtime_cpu_ms'):.3f} |"
            )
    print(
        "\n| op | gRPC door | http server ms / gRPC server ms (goal ≥ 90 %) "
        "| http / gRPC sidecar CPU per call | p50 gRPC − http ms (goal ≤ +0.05) |"
    )
    print("|---|---|---|---|---|")
    for op in ops:
        h = runs[(op.name, "http")]
        for door in doors:
            if door == "http":
                continue
            g = runs[(op.name, door)]
            # Ratio per round (the doors ran back to back), then the median.
            ratio = statistics.median(x.server_ms / y.server_ms for x, y in zip(h, g, strict=True))
            cpu = statistics.median(
                x.sidecar_cpu_ms / y.sidecar_cpu_ms for x, y in zip(h, g, strict=True)
            )
            added = statistics.median(y.p50_ms - x.p50_ms for x, y in zip(h, g, strict=True))
            print(f"| {op.name} | {door} | {ratio:.0%} | {cpu:.0%} | {added:+.3f} |")


if __name__ == "__main__":
    main()
