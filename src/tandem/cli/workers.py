"""`tandem run --runtime-workers N`: workers 1..N-1 next to the runtime (worker 0, the owner).

Each worker is ``python -m tandem.ext_proc`` with the owner's arguments, its own sockets
(``runtime-{i}.sock``, ``runtime-http-{i}.sock``, ``metrics-{i}.sock`` in the run directory)
and ``--worker-index i``; it serves only the stateless API paths Envoy routes to it
(tandem.xds.translate.workers). They are started here; once `tandem run` has become its
watcher (tandem.cli.watch), a worker that dies is started again alone (it carries no
delivery or actor state), while Envoy's health check keeps calls on the others meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tandem.cli.children import Child, NotReady

DEFAULT_WORKERS = 1
# The owner's arguments a worker gets its own value for.
_OWN_SOCKETS = {"--socket": "runtime-{i}.sock", "--http-socket": "runtime-http-{i}.sock"}
_METRICS = "--metrics-socket"
# Only the owner reads Envoy's stats (its /metrics serves them once).
_OWNER_ONLY = ("--proxy-admin-socket", "--worker-metrics-socket")


class WorkersError(Exception):
    """A worker could not start; the message says why and where its log is."""


def worker_count(text: str) -> int:
    """``--runtime-workers``'s type: a whole number of runtime processes, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of runtime processes (1 or more), got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be 1 or more (1 is one runtime process, the default), got {value}"
        )
    return value


def metrics_socket(run_dir: Path, index: int) -> Path:
    return run_dir / f"metrics-{index}.sock"


def worker_sockets(run_dir: Path, count: int) -> list[tuple[Path, Path]]:
    """(gRPC, HTTP) socket of workers 1..count-1, for the bootstrap's worker clusters."""
    return [
        (
            run_dir / _OWN_SOCKETS["--socket"].format(i=i),
            run_dir / _OWN_SOCKETS["--http-socket"].format(i=i),
        )
        for i in range(1, count)
    ]


def worker_argv(owner: Sequence[str], run_dir: Path, index: int) -> list[str]:
    """The owner's command line made worker ``index``'s (pure)."""
    out: list[str] = []
    args = iter(owner)
    for arg in args:
        if arg in _OWN_SOCKETS:
            next(args, None)
            out += [arg, str(run_dir / _OWN_SOCKETS[arg].format(i=index))]
        elif arg == _METRICS:
            next(args, None)
            out += [arg, str(metrics_socket(run_dir, index))]
        elif arg in _OWNER_ONLY:
            next(args, None)
        else:
            out.append(arg)
    return [*out, "--worker-index", str(index)]


@dataclass(slots=True)
class _Worker:
    index: int
    argv: list[str]
    log_path: Path
    socket: Path
    http_socket: Path
    child: Child | None = None


@dataclass(slots=True)
class RuntimeWorkers:
    """Workers 1..count-1 of one sidecar."""

    owner_argv: Sequence[str]
    run_dir: Path
    logs_dir: Path
    app_id: str
    count: int
    ready_timeout: float = 30.0
    _workers: list[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(1, self.count):
            self._workers.append(
                _Worker(
                    index=i,
                    argv=worker_argv(self.owner_argv, self.run_dir, i),
                    log_path=self.logs_dir / f"{self.app_id}.runtime-{i}.log",
                    socket=self.run_dir / _OWN_SOCKETS["--socket"].format(i=i),
                    http_socket=self.run_dir / _OWN_SOCKETS["--http-socket"].format(i=i),
                )
            )

    def owner_args(self) -> list[str]:
        """For the owner's command line: fold each worker's metrics into its /metrics."""
        out = []
        if _METRICS in self.owner_argv:
            for w in self._workers:
                out += ["--worker-metrics-socket", str(metrics_socket(self.run_dir, w.index))]
        return out

    def for_watcher(self) -> list[dict[str, object]]:
        """Each worker as tandem.cli.watch takes its children, with what restarting it takes:
        the watcher supervises them once `tandem run` has become it."""
        out: list[dict[str, object]] = []
        for w in self._workers:
            child = w.child
            if child is None:
                continue
            out.append(
                {
                    "name": child.name,
                    "pid": child.proc.pid,
                    "log_path": str(child.log_path) if child.log_path is not None else None,
                    "log_offset": child.log_offset,
                    "returncode": child.proc.returncode,
                    "restart": {
                        "argv": w.argv,
                        "sockets": [str(w.socket), str(w.http_socket)],
                        "label": f"runtime worker {w.index}",
                    },
                }
            )
        return out

    def pids(self) -> list[int]:
        return [w.child.proc.pid for w in self._workers if w.child is not None]

    async def start(self) -> None:
        """Start every worker and wait until each serves (tandem.cli.watch restarts one
        that dies, once `tandem run` has become it)."""
        for worker in self._workers:
            await self._spawn(worker)
        for worker in self._workers:
            await self._wait_ready(worker)

    async def _spawn(self, worker: _Worker) -> None:
        # Stale sockets of an earlier run: readiness waits for fresh ones.
        for path in (worker.socket, worker.http_socket):
            path.unlink(missing_ok=True)
        worker.child = await Child.start(
            f"runtime worker {worker.index}", worker.argv, log_path=worker.log_path
        )

    async def _wait_ready(self, worker: _Worker) -> None:
        child = worker.child
        assert child is not None
        try:
            await child.wait_until(
                lambda: worker.socket.exists() and worker.http_socket.exists(),
                "its sockets",
                self.ready_timeout,
            )
        except NotReady as exc:
            raise WorkersError(str(exc)) from exc

    async def stop(self, timeout: float) -> None:
        await asyncio.gather(*(w.child.stop(timeout) for w in self._workers if w.child is not None))
