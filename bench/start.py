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

import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

from _common import (
    Samples,
    TandemMachine,
    code_variants,
    tandem_run_argv,
    timed,
    variants_parser,
)

TARGETS = {"warm": 0.5, "cold": 1.0}


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1.0/healthz", timeout=1) as r:
            return bool(r.status == 204)
    except (urllib.error.URLError, OSError):
        return False


def start(
    machine: TandemMachine, app_id: str, extra_env: dict[str, str], deadline: float = 60.0
) -> float:
    argv, ports = tandem_run_argv(app_id)
    out = machine.home / f"{app_id}.out"
    with open(out, "wb") as sink:
        t0 = time.perf_counter()
        proc = machine.spawn(argv, extra_env, stdout=sink, stderr=subprocess.STDOUT)
    while not healthy(ports.http):
        if proc.poll() is not None or time.perf_counter() - t0 > deadline:
            said = out.read_text(errors="replace")[-3000:]
            sys.exit(f"bench: `tandem run` of {app_id} never became healthy:\n{said}")
        time.sleep(0.005)  # polling for health, with a deadline
    return time.perf_counter() - t0


def one_round(figures: Samples, extra_env: dict[str, str]) -> None:
    figures.add("floor: python -c pass", timed([sys.executable, "-c", "pass"], extra_env))
    figures.add(
        "floor: import tandem.ext_proc.runtime",
        timed([sys.executable, "-c", "import tandem.ext_proc.runtime"], extra_env),
    )
    # A fresh home each round: the first start also starts the control plane.
    with TandemMachine() as machine:
        cold = start(machine, "cold", extra_env)
        warm = start(machine, "warm", extra_env)
    figures.add("cold", cold)
    figures.add("warm", warm)
    floor = figures["floor: import tandem.ext_proc.runtime"][-1]
    figures.add("cold − import floor (same round)", cold - floor)
    figures.add("warm − import floor (same round)", warm - floor)


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
    args = variants_parser(__doc__, rounds=5).parse_args()
    variants = code_variants(args.baseline_src, f"baseline ({args.baseline_src})")
    results = {name: Samples() for name in variants}
    for _ in range(args.rounds):
        for name, extra_env in variants.items():
            one_round(results[name], extra_env)
    for name, figures in results.items():
        print_table(name, figures)


if __name__ == "__main__":
    main()
