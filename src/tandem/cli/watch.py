"""`tandem run` once its sidecar is ready: runs the app, watches every process, keeps the
machine's control plane alive, and stops it all in order.

    (exec'd by tandem.cli.run: same pid, same children)  python -m tandem.cli.watch STATE

Starting a sidecar needs asyncio, the CLI's parsers and the resource loaders; watching it
needs none of them, and `tandem run` lives as long as the app. So once the sidecar is up,
`tandem run` replaces its own image with this small one (``os.execv``: the pid, the
children, the terminal and the port booking stay). It is plain blocking Python: signals
arrive through a wake-up pipe, children are polled with ``waitpid``. SIGINT and SIGTERM
are blocked across the exec, so a Ctrl-C or `tandem stop` that lands meanwhile waits for
the handlers here.

The control plane watch: every tick reads the control plane's pid (a file read and a
signal 0). When it is gone, :func:`tandem.cli.controlplane.restart_if_gone`, whose start
lock lets exactly one of the watching sidecars start it, brings it back; the new one
listens on the same Unix socket, so every Envoy reconnects on its own, is admitted again
with the credential it already holds and gets fresh certificates from the persisted CA. A
deliberate stop (SIGTERM to the control plane, or `tandem stop --all`) leaves
``$TANDEM_HOME/stopping``: the watchers then leave it down.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.cli.controlplane import (
    ControlPlaneError,
    clear_dead_record,
    restart_if_gone,
    stopping,
)
from tandem.cli.exits import describe_exit, log_tail
from tandem.cli.home import Home
from tandem.cli.progress import Progress
from tandem.procs import die_with_parent, pid_alive
from tandem.xds.record import read_info

WATCH_INTERVAL_SECONDS = 0.5
# After a failed restart, wait longer before the next try: its log says why it failed.
RETRY_AFTER_FAILURE_SECONDS = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_POLL_SECONDS = 0.02
# A runtime worker that keeps dying is started again at most this often; one that ran
# STABLE_SECONDS before dying starts again at once.
RESTART_BACKOFF_SECONDS = (0.2, 1.0, 5.0)
STABLE_SECONDS = 30.0


@dataclass(slots=True)
class Restart:
    """How to start a child again alone (a runtime worker: it holds no delivery or actor
    state, and Envoy keeps calls on the other runtime processes meanwhile)."""

    argv: list[str]
    sockets: list[str]
    label: str
    started: float = field(default_factory=time.monotonic)
    failures: int = 0
    due: float | None = None  # when it is to be started again


@dataclass(slots=True)
class Process:
    """A child: one `tandem run` started (runtime, Envoy) or starts here (the app)."""

    name: str
    pid: int
    log_path: Path | None = None
    log_offset: int = 0
    returncode: int | None = None
    # Reaped before the exec (its status went with the old image).
    lost: bool = False
    popen: subprocess.Popen[bytes] | None = None
    restart: Restart | None = None

    @property
    def exited(self) -> bool:
        return self.returncode is not None or self.lost

    def poll(self) -> bool:
        if self.exited:
            return True
        if self.popen is not None:
            self.returncode = self.popen.poll()
            return self.exited
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.lost = True
            return True
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.exited

    def describe(self) -> str:
        return "exited" if self.lost else describe_exit(self.returncode)

    def send(self, sig: int) -> None:
        if not self.poll():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def stop(self, timeout: float, sig: int = signal.SIGTERM) -> int:
        """``sig``, then SIGKILL after ``timeout``; the exit code (0 if it was lost)."""
        self.send(sig)
        deadline = time.monotonic() + timeout
        while not self.poll():
            if time.monotonic() >= deadline:
                self.send(signal.SIGKILL)
                deadline = float("inf")
            time.sleep(_POLL_SECONDS)
        return self.returncode or 0


@dataclass(slots=True)
class ControlPlaneWatch:
    home: Home
    progress: Progress
    stopped_reported: bool = False
    retry_at: float = 0.0

    def tick(self) -> None:
        info = read_info(self.home.root)
        if info is not None and pid_alive(info.pid):
            self.stopped_reported = False
            return
        if stopping(self.home):
            if not self.stopped_reported:
                self.stopped_reported = True
                clear_dead_record(self.home)
                self.progress.step_note(
                    "the control plane was stopped deliberately; not restarting it (this "
                    "sidecar keeps its configuration; the next `tandem run` starts a new one)"
                )
            return
        if time.monotonic() < self.retry_at:
            return
        dead = info.pid if info is not None else None
        try:
            cp = restart_if_gone(self.home)
        except ControlPlaneError as exc:
            self.progress.fail(f"the control plane died and could not be restarted: {exc}")
            self.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            return
        if cp is not None and cp.started_here:
            lost = f" (pid {dead})" if dead is not None else ""
            self.progress.done(f"the control plane{lost} was gone; restarted it (pid {cp.pid})")


def _spawn(argv: list[str], log_path: Path | None) -> subprocess.Popen[bytes]:
    """A child as tandem.cli.children starts them: its own session, output appended to its
    log, gone with us if we are killed."""
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    finally:
        if log_path is not None and not isinstance(out, int):
            out.close()


def remove_sockets(paths: list[Path]) -> None:
    """The app's API sockets (``--unix-domain-socket``), if they are still ours."""
    for path in paths:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()


@dataclass(slots=True)
class Watch:
    state: dict[str, Any]
    progress: Progress
    children: list[Process] = field(default_factory=list)
    received: list[int] = field(default_factory=list)

    def run(self) -> int:
        s = self.state
        graceful = float(s["graceful_shutdown_seconds"])
        try:
            wake = self._listen()
            self.progress.done(s["ready_line"])
            app: Process | None = None
            if s.get("command"):
                try:
                    popen = subprocess.Popen(
                        s["command"], env=s["app_env"], umask=int(s["app_umask"])
                    )
                except OSError as exc:
                    self.progress.fail(f"could not start {s['command'][0]}: {exc}")
                    return 1
                app = Process("app", popen.pid, popen=popen)
                self.progress.done(f"app started (pid {popen.pid}): {' '.join(s['command'])}")
            self._wait(app, wake)
            code = 0
            if app is not None:
                if app.exited:
                    code = app.returncode or 0
                    self.progress.done(f"app exited with code {code}")
                else:
                    # A signal, or the sidecar died: the app goes too. The app has the
                    # graceful period to finish (its sidecar keeps serving it meanwhile).
                    sig = self.received[-1] if self.received else signal.SIGTERM
                    code = app.stop(graceful, sig)
                    # Stopped on purpose (Ctrl-C, `tandem stop`) is a clean exit, as in
                    # `dapr run`.
                    code = 0 if self.received else code or 1
            for child in self.children:
                if child.exited and not self.received and (app is None or not app.exited):
                    self.progress.fail(
                        f"the {child.name} {child.describe()} unexpectedly (pid {child.pid}); "
                        f"its log from this run ({child.log_path}):\n"
                        f"{log_tail(child.log_path, child.log_offset)}"
                    )
                    code = code or 1
            return code
        finally:
            self.progress.step_note("stopping sidecar")
            self._stop(graceful + float(s["stop_margin_seconds"]))

    def _listen(self) -> int:
        """Signal handlers, and the pipe their arrival wakes (its reading end)."""
        wake_r, wake_w = os.pipe()
        # Both ends: a read after select's timeout must find the pipe empty, not wait for
        # the next signal (the control plane watch and restarts run on that timeout).
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda sig, _: self.received.append(sig))
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the wait
        # Blocked across the exec (tandem.cli.run): pending ones arrive now, and the app
        # starts with none blocked.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [*STOP_SIGNALS, signal.SIGCHLD])
        return wake_r

    def _wait(self, app: Process | None, wake_r: int) -> None:
        """Until a signal, or a child or the app ends; the control plane is watched meanwhile."""
        watched = [*self.children, *([app] if app is not None else [])]
        control_plane = ControlPlaneWatch(Home(Path(self.state["home"])), self.progress)
        next_tick = time.monotonic() + WATCH_INTERVAL_SECONDS
        while not self.received and not self._ended(watched):
            wake_at = min([next_tick, *self._restarts_due()])
            select.select([wake_r], [], [], max(0.0, wake_at - time.monotonic()))
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            if time.monotonic() >= next_tick:
                control_plane.tick()
                next_tick = time.monotonic() + WATCH_INTERVAL_SECONDS

    def _restarts_due(self) -> list[float]:
        return [c.restart.due for c in self.children if c.restart is not None and c.restart.due]

    def _ended(self, watched: list[Process]) -> bool:
        """True once a child the sidecar cannot do without (or the app) has exited; a
        restartable one is started again instead."""
        ended = False
        for p in watched:
            if not p.poll():
                continue
            if p.restart is None:
                ended = True
            else:
                self._restart(p, p.restart)
        return ended

    def _restart(self, child: Process, restart: Restart) -> None:
        now = time.monotonic()
        if restart.due is None:
            ran = now - restart.started
            restart.failures = 0 if ran >= STABLE_SECONDS else restart.failures + 1
            delay = (
                RESTART_BACKOFF_SECONDS[min(restart.failures, len(RESTART_BACKOFF_SECONDS)) - 1]
                if restart.failures
                else 0.0
            )
            restart.due = now + delay
            self.progress.warn(
                f"the {child.name} (pid {child.pid}) {child.describe()}; the other runtime "
                f"processes serve its calls; restarting it (log {child.log_path})"
            )
        if now < restart.due:
            return
        restart.due = None
        for path in restart.sockets:  # the new one's sockets mark it ready to Envoy
            Path(path).unlink(missing_ok=True)
        try:
            popen = _spawn(restart.argv, child.log_path)
        except OSError as exc:
            self.progress.fail(f"{restart.label} did not start again: {exc}")
            restart.due = time.monotonic() + RESTART_BACKOFF_SECONDS[-1]
            return
        child.pid, child.popen, child.returncode, child.lost = popen.pid, popen, None, False
        restart.started = time.monotonic()
        self.progress.done(f"{restart.label} restarted (pid {popen.pid})")

    def _stop(self, timeout: float) -> None:
        s = self.state
        for child in reversed(self.children):
            # The runtime finishes in-flight work for up to the graceful period (it knows it).
            child.stop(timeout)
        pid = os.getpid()
        Path(s["port_booking"]).unlink(missing_ok=True)
        app_file = s.get("app_file")
        if app_file:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(Path(app_file).read_text()).get("pid") == pid:
                    Path(app_file).unlink()
        shutil.rmtree(s["run_dir"], ignore_errors=True)
        remove_sockets([Path(p) for p in s["app_sockets"]])


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    state = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    progress = Progress(app_id=state["app_id"], started=state["progress_started"])
    watch = Watch(state, progress)
    for c in state["children"]:
        log_path = Path(c["log_path"]) if c.get("log_path") else None
        returncode = c.get("returncode")
        restart = Restart(**c["restart"]) if c.get("restart") else None
        watch.children.append(
            Process(
                c["name"],
                int(c["pid"]),
                log_path,
                int(c.get("log_offset", 0)),
                returncode,
                restart=restart,
            )
        )
    return watch.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
