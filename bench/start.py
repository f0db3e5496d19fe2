"""Start-up: `tandem run` to ``/v1.0/healthz`` 204, cold and with the control plane running.

    python bench/start.py [--rounds 5] [--baseline-src DIR]

Each round uses a fresh ``$TANDEM_HOME``: a first `tandem run` starts the control plane too
(**cold**), a second one finds it running (**warm**). Both are timed from the exec of
`tandem run` to the first 204 of ``/v1.0/healthz`` (polled every 5 ms; the sidecars run no
app, so full health is the sidecar's own). Same-run floors: a bare interpreter
(``python -c pass``) and one that imports the runtime (``import tandem.ext_proc.runtime``),
the import work every runtime start pays. Prints medians and the ratios to the targets
(issue 21: warm ≤ 0.5 s, cold ≤ 1.0 s), and each start minus the same round's import floor:
on a busy machine the imports' time swings by seconds, the rest of the start much less.

``--baseline-src DIR`` (a ``src`` folder of another commit, e.g. from ``git archive``) also
times that code in every round, right after this one (``PYTHONPATH`` puts it first for
every process `tandem run` starts), so both share each round's load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tandem.cli.ports import free_listen_ports

TARGETS = {"warm": 0.5, "cold": 1.0}


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1.0/healthz", timeout=1) as r:
            return bool(r.status == 204)
    except (urllib.error.URLError, OSError):
        return False


def start(
    home: Path, app_id: str, extra_env: dict[str, str], deadline: float = 60.0
) -> tuple[subprocess.Popen[bytes], float]:
    # Below the kernel's range for outgoing connections: this bench's own polling opens
    # hundreds of them, and one could take a port before Envoy binds it.
    chosen = free_listen_ports(4)
    port = chosen[0]
    argv = [sys.executable, "-m", "tandem.cli.main", "run", "--app-id", app_id]
    for flag, value in zip(
        ("--dapr-grpc-port", "--dapr-internal-port", "--metrics-port"), chosen[1:], strict=True
    ):
        argv += [flag, str(value)]
    argv += ["--dapr-http-port", str(port), "--log-level", "warn"]
    env = {**os.environ, **extra_env, "TANDEM_HOME": str(home)}
    out = home / f"{app_id}.out"
    with open(out, "wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
    while not healthy(port):
        if proc.poll() is not None or time.perf_counter() - t0 > deadline:
            said = out.read_text(errors="replace")[-3000:]
            sys.exit(f"bench: `tandem run` of {app_id} never became healthy:\n{said}")
        time.sleep(0.005)  # polling for health, with a deadline
    return proc, time.perf_counter() - t0


def stop(home: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(30)
    record = home / "controlplane.json"
    if record.exists():
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
            os.kill(json.loads(record.read_text())["pid"], signal.SIGTERM)
    shutil.rmtree(home, ignore_errors=True)


def timed(argv: list[str], extra_env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, **extra_env})
    return time.perf_counter() - t0


def one_round(figures: dict[str, list[float]], extra_env: dict[str, str]) -> None:
    figures["floor: python -c pass"].append(timed([sys.executable, "-c", "pass"], extra_env))
    figures["floor: import tandem.ext_proc.runtime"].append(
        timed([sys.executable, "-c", "import tandem.ext_proc.runtime"], extra_env)
    )
    home = Path(tempfile.mkdtemp(prefix="tbs", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        proc, cold = start(home, "cold", extra_env)
        procs.append(proc)
        proc, warm = start(home, "warm", extra_env)
        procs.append(proc)
    finally:
        stop(home, procs)
    figures["cold"].append(cold)
    figures["warm"].append(warm)
    floor = figures["floor: import tandem.ext_proc.runtime"][-1]
    figures["cold − import floor (same round)"].append(cold - floor)
    figures["warm − import floor (same round)"].append(warm - floor)


def print_table(title: str, figures: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print("| start | median s | min s | max s | median / target |")
    print("|---|---|---|---|---|")
    for name, values in figures.items():
        target = TARGETS.get(name)
        ratio = f"{statistics.median(values) / target:.2f}× (≤ {target} s)" if target else ""
        print(
            f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | "
            f"{max(values):.3f} | {ratio} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, help="another commit's src folder")
    args = parser.parse_args()
    variants: dict[str, dict[str, str]] = {"this code": {}}
    if args.baseline_src is not None:
        variants[f"baseline ({args.baseline_src})"] = {
            "PYTHONPATH": str(args.baseline_src.resolve())
        }
    results: dict[str, dict[str, list[float]]] = {
        name: {
            key: []
            for key in (
                "floor: python -c pass",
                "floor: import tandem.ext_proc.runtime",
                "cold",
                "warm",
                "cold − import floor (same round)",
                "warm − import floor (same round)",
            )
        }
        for name in variants
    }
    for _ in range(args.rounds):
        for name, extra_env in variants.items():
            one_round(results[name], extra_env)
    for name, figures in results.items():
        print_table(name, figures)


if __name__ == "__main__":
    main()
