"""The runtime alone: exec of ``python -m tandem.ext_proc`` to serving (issue 21, start).

    python bench/runtime_start.py [--rounds 10] [--baseline-src DIR]

With Envoy starting in parallel, the runtime's own start is `tandem run`'s critical path:
exec to its gRPC and HTTP sockets existing (what `tandem run` waits for), and to
``/v1.0/healthz`` 204 on its HTTP socket (components loaded). A `tandem run` of an idle app
first makes a home with the default components and a running control plane; each round then
execs the runtime with that sidecar's own arguments (fresh sockets), this code and, with
``--baseline-src DIR`` (another commit's ``src``, first on ``PYTHONPATH``), the baseline
right after it, so both share each round's load. Same-run floor: ``python -c pass``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Samples, TandemMachine, code_variants, timed, variants_parser

from tandem.cli.ports import free_port


def runtime_argv(home: Path, run_dir: Path) -> list[str]:
    """What `tandem run` passes an idle app's runtime (cli/run.py), with this run dir."""
    return [
        sys.executable,
        "-m",
        "tandem.ext_proc",
        "--app-id",
        "bench",
        "--socket",
        str(run_dir / "runtime.sock"),
        "--home",
        str(home),
        "--app-protocol",
        "http",
        "--log-level",
        "warn",
        "--resources-path",
        str(home / "components"),
        "--http-socket",
        str(run_dir / "runtime-http.sock"),
        "--dapr-http-port",
        str(free_port()),
        "--node-id",
        f"bench-{run_dir.name}",
        "--control-plane",
        f"unix:{home / 'run' / 'xds.sock'}",
        "--actor-forward-socket",
        str(run_dir / "actor-forward.sock"),
        "--metrics-socket",
        str(run_dir / "metrics.sock"),
    ]


def healthz(path: Path) -> int:
    """The status of GET /v1.0/healthz on the runtime's HTTP socket (0: not answering)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(path))
            s.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def one_start(home: Path, extra_env: dict[str, str]) -> tuple[float, float]:
    run_dir = Path(tempfile.mkdtemp(prefix="rs", dir=home / "run"))
    grpc_sock, http_sock = run_dir / "runtime.sock", run_dir / "runtime-http.sock"
    env = {**os.environ, **extra_env, "TANDEM_HOME": str(home)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        runtime_argv(home, run_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    sockets = 0.0
    try:
        while True:
            if proc.poll() is not None or time.perf_counter() - t0 > 60:
                sys.exit("bench: the runtime never served")
            if not sockets and grpc_sock.exists() and http_sock.exists():
                sockets = time.perf_counter() - t0
            if sockets and healthz(http_sock) == 204:
                return sockets, time.perf_counter() - t0
            time.sleep(0.002)  # polling for the sockets and health, with a deadline
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    args = variants_parser(__doc__, rounds=10).parse_args()
    variants = code_variants(args.baseline_src)
    results = {name: Samples() for name in variants}
    # An idle app's sidecar makes the home (default components) and the control plane.
    with TandemMachine() as machine:
        machine.run("seed")
        for _ in range(args.rounds):
            for name, extra_env in variants.items():
                pass_s = timed([sys.executable, "-c", "pass"], extra_env)
                results[name].add("python -c pass", pass_s)
                sockets, healthy = one_start(machine.home, extra_env)
                results[name].add("exec → sockets", sockets)
                results[name].add("exec → healthz 204", healthy)
    print("| variant | measure | median s | min s | max s |")
    print("|---|---|---|---|---|")
    for name, figures in results.items():
        for key, values in figures.items():
            print(
                f"| {name} | {key} | {statistics.median(values):.3f} | "
                f"{min(values):.3f} | {max(values):.3f} |"
            )
    if "baseline" in results:
        for key in ("exec → sockets", "exec → healthz 204"):
            this = statistics.median(results["this code"][key])
            base = statistics.median(results["baseline"][key])
            print(f"{key}: this code − baseline = {(this - base) * 1000:+.0f} ms")


if __name__ == "__main__":
    main()
