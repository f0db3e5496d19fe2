"""Shared pieces of the benchmarks: a fast loopback app, wrk, `tandem run` launchers,
work folders, per-round figures and this code vs a baseline ``src``."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.cli.ports import free_listen_ports, free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
import harness  # noqa: E402

FAST_APP = r"""
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
BODY = b'{"ok":true}'
RESP = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0: return
            head = self.buf[:i].lower(); n = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"): n = int(line.split(b":")[1])
            if len(self.buf) < i + 4 + n: return
            self.buf = self.buf[i + 4 + n:]
            self.t.write(RESP)
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await srv.serve_forever()
asyncio.run(main())
"""


@dataclass(frozen=True)
class WrkResult:
    name: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float

    def row(self) -> str:
        return f"| {self.name} | {self.rps:,.0f} | {self.p50_ms:.3f} | {self.p90_ms:.3f} | {self.p99_ms:.3f} |"


def need_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        sys.exit("bench: wrk is required (Debian: apt-get install wrk)")
    return path


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        raise ValueError(value)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(
    name: str,
    url: str,
    *,
    connections: int = 1,
    seconds: int = 5,
    threads: int = 1,
    script: str | None = None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    argv = [need_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    if script:
        argv += ["-s", script]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"bench: {name}: {non2xx.group(1)} failed responses\n{out}")
    return WrkResult(name, rps, _ms(pct["50"]), _ms(pct["90"]), _ms(pct["99"]))


def start_fast_app() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FAST_APP, str(port)])
    wait_http(f"http://127.0.0.1:{port}/", 200)
    return proc, port


def wait_http(
    url: str, status: int, timeout: float = 60.0, headers: dict[str, str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == status:
                    return
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"bench: {url} never answered {status}")


@dataclass(frozen=True)
class SidecarPorts:
    http: int
    grpc: int


def tandem_run_argv(app_id: str, *extra: str) -> tuple[list[str], SidecarPorts]:
    """`tandem run` of ``app_id`` on fresh ports, logging warnings only, and its API ports."""
    # Below the kernel's range for outgoing connections, as `tandem run` picks its own:
    # a bench's clients open many, and one could take a port before Envoy binds it.
    ports = free_listen_ports(4)
    argv = harness.tandem_run_argv(app_id, ports, "--log-level", "warn", *extra)
    return argv, SidecarPorts(ports[0], ports[1])


class TandemMachine:
    """A private $TANDEM_HOME with `tandem run` sidecars; everything stops on exit."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="tb", dir="/tmp"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, app_id: str, *extra: str) -> int:
        return self.run_sidecar(app_id, *extra).http

    def run_sidecar(self, app_id: str, *extra: str) -> SidecarPorts:
        """Like :meth:`run`, returning both API ports."""
        argv, ports = tandem_run_argv(app_id, *extra)
        self.spawn(argv, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{ports.http}/v1.0/healthz", 204)
        return ports

    def spawn(
        self, argv: list[str], extra_env: dict[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (e.g. from :func:`tandem_run_argv`) on this machine's home; it
        is stopped with the machine."""
        env = {**os.environ, **(extra_env or {}), "TANDEM_HOME": str(self.home)}
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, env=env, **popen)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(30)
        harness.remove_home(self.home)

    def __enter__(self) -> TandemMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def work_folder(prefix: str) -> Iterator[Path]:
    """A fresh folder under /tmp (a short path: Unix sockets may live in it), removed after."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def resources_folder(work: Path, **documents: str) -> Path:
    """``work/resources`` holding each document as ``<keyword>.yaml``, for ``--resources-path``."""
    folder = work / "resources"
    folder.mkdir()
    for name, text in documents.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def post_script(path: Path, body: str) -> str:
    """Write a wrk script to ``path`` that POSTs the JSON ``body``; its path, for :func:`wrk`."""
    path.write_text(
        f"wrk.method = \"POST\"\nwrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return str(path)


class Samples(dict[str, list[float]]):
    """Each figure's values, one a round, in the order the figures first came."""

    def add(self, name: str, value: float) -> None:
        self.setdefault(name, []).append(value)

    def medians(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.items()}


def variants_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """The command line of a bench that times this code and a baseline in the same rounds:
    ``[--rounds N] [--baseline-src DIR]``, described by the first line of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--baseline-src", type=Path, help="another commit's src folder")
    return parser


def code_variants(
    baseline_src: Path | None, baseline: str = "baseline"
) -> dict[str, dict[str, str]]:
    """Each code a round times, by name: its extra environment. "this code" needs none; with
    ``baseline_src`` (another commit's ``src``, e.g. from ``git archive``) the ``baseline``
    has it first on ``PYTHONPATH``, for every process it starts."""
    variants: dict[str, dict[str, str]] = {"this code": {}}
    if baseline_src is not None:
        variants[baseline] = {"PYTHONPATH": str(baseline_src.resolve())}
    return variants


def timed(argv: list[str], extra_env: dict[str, str]) -> float:
    """Seconds ``argv`` takes to run to its end (it must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, **extra_env})
    return time.perf_counter() - t0


def compare_with_plain_route(policy_yaml: str, guarded: str, label: str) -> None:
    """Invocation of app id ``guarded`` (shaped by ``policy_yaml`` in the caller's resources)
    vs the plain app id ``plain``, both on one fast app, in one run; rounds alternate the
    order and the ratio is the guarded route's median p50 over the plain one's.

    Command line: ``[--seconds 5] [--connections 1] [--rounds 2]``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    app, app_port = start_fast_app()
    resources = Path(tempfile.mkdtemp(prefix="tbres"))
    (resources / "policy.yaml").write_text(policy_yaml)
    p50s: dict[str, list[float]] = {"plain": [], guarded: []}
    rows = []
    try:
        with TandemMachine() as m:
            for callee in p50s:
                m.run(callee, "--app-port", str(app_port))
            front = m.run("caller", "--resources-path", str(resources))
            urls = {c: f"http://127.0.0.1:{front}/v1.0/invoke/{c}/method/x" for c in p50s}
            for url in urls.values():
                wait_http(url, 200)
            for n in range(a.rounds):
                order = list(p50s) if n % 2 == 0 else list(reversed(p50s))
                for callee in order:
                    r = wrk(
                        f"{callee} (round {n + 1})",
                        urls[callee],
                        connections=a.connections,
                        seconds=a.seconds,
                    )
                    p50s[callee].append(r.p50_ms)
                    rows.append(r)
    finally:
        app.terminate()
    print(f"\nconnections={a.connections} seconds={a.seconds} rounds={a.rounds}\n")
    print("| route | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r.row())
    plain, shaped = (statistics.median(p50s[k]) for k in ("plain", guarded))
    print(
        f"\nmedian p50: plain {plain:.3f} ms, {label} {shaped:.3f} ms "
        f"-> ratio {shaped / plain:.2f}x ({(shaped - plain) * 1000:+.0f} us)"
    )


def _processes() -> dict[int, tuple[int, float, str]]:
    """Every process now: pid -> (parent pid, CPU seconds used, command line)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[int, float, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, cmd)
    return out


def _tree(procs: dict[int, tuple[int, float, str]], roots: list[int]) -> set[int]:
    """``roots`` and their live descendants."""
    keep = set(roots)
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in keep} - keep
        grew = bool(more)
        keep |= more
    return keep & procs.keys()


def role(cmd: str) -> str:
    """``runtime`` (``tandem.ext_proc``), ``envoy``, ``tandem run`` (the supervisor, or the
    watcher it becomes) or ``app`` (anything else)."""
    if "tandem.ext_proc" in cmd:
        return "runtime"
    if "envoy" in cmd.split(" ", 1)[0]:
        return "envoy"
    if "tandem.cli.main" in cmd or "tandem.cli.watch" in cmd:
        return "tandem run"
    return "app"


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``roots`` and their live descendants."""
    procs = _processes()
    return sum(procs[pid][1] for pid in _tree(procs, roots))


def tree_cpu_by_role(roots: list[int], of: Callable[[str], str] = role) -> dict[str, float]:
    """Like :func:`tree_cpu`, split by :func:`role` (or by ``of`` a command line)."""
    procs = _processes()
    out: dict[str, float] = {}
    for pid in _tree(procs, roots):
        name = of(procs[pid][2])
        out[name] = out.get(name, 0.0) + procs[pid][1]
    return out


def tree_private_mb(roots: list[int]) -> float:
    """Private memory (RssAnon), MB, of ``roots`` and their live descendants."""
    kib = 0
    for pid in _tree(_processes(), roots):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    kib += int(line.split()[1])
    return kib / 1024


def tree_pids(roots: list[int], of_role: str) -> list[int]:
    """The processes of one :func:`role` among ``roots`` and their descendants."""
    procs = _processes()
    return [pid for pid in _tree(procs, roots) if role(procs[pid][2]) == of_role]


def pin_apart(roots: list[int]) -> None:
    """Envoy's threads on CPU 0, the runtime's on CPU 1: a diagnostic, never a default.

    Left to itself, the scheduler often wakes one beside the other on the same core (a
    Unix-socket write is a "sync" wake-up), and on a 2-core box the second core then
    waits; pinning shows what the same processes do when they are kept apart."""
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("bench: --pin needs two CPUs")
    for what, cpu in (("envoy", 0), ("runtime", 1)):
        for pid in tree_pids(roots, what):
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), {cpu})


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system
