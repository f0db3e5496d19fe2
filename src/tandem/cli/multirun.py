"""`tandem run -f FILE`: every app of a multi-app run template with its sidecar.

Each app gets its own `tandem run` (the same start-up, supervision and shutdown as by hand),
started in the app's folder with the template's environment. Their output is shown line by
line behind the app id (coloured on a terminal) and, per ``appLogDestination``, written to
``<appDirPath>/.dapr/logs``. With ``daprdLogDestination`` console, the runtime's log is
followed on the console too.

The run ends when every app has exited (its code: the first non-zero one, else 0), or on
Ctrl-C / SIGTERM / `tandem stop -f FILE`, which stop every app and sidecar gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tandem.cli.children import Child
from tandem.cli.home import Home
from tandem.cli.runfile import AppRun, RunFile

_COLOURS = ("36", "33", "35", "32", "34", "31")
# How long each `tandem run` gets to stop its app and sidecar after SIGTERM.
STOP_TIMEOUT = 30.0


class _Output:
    """Lines from many apps to one console, each behind its app id."""

    def __init__(self, stream: TextIO, width: int) -> None:
        self._stream = stream
        self._colour = stream.isatty() and "NO_COLOR" not in os.environ
        self._width = width

    def writer(self, label: str, index: int) -> Callable[[str], None]:
        tag = f"{label:<{self._width}} |"
        if self._colour:
            tag = f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{tag}\x1b[0m"

        def write(line: str) -> None:
            self._stream.write(f"{tag} {line}\n")
            self._stream.flush()

        return write


async def _pump(
    reader: asyncio.StreamReader, console: Callable[[str], None] | None, file: TextIO | None
) -> None:
    while line := await reader.readline():
        text = line.decode(errors="replace").rstrip("\n")
        if console is not None:
            console(text)
        if file is not None:
            file.write(text + "\n")
            file.flush()


async def _follow(path: Path, console: Callable[[str], None], start: int) -> None:
    """Follow a log file from ``start`` (the runtime's, for daprdLogDestination console)."""
    offset = start
    pending = b""
    while True:
        try:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                console(line.decode(errors="replace"))
        await asyncio.sleep(0.2)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


async def run_file(template: RunFile, home: Home, stream: TextIO | None = None) -> int:
    out = stream or sys.stdout
    width = max(len(a.app_id) for a in template.apps) + len(" daprd")
    output = _Output(out, width)
    say = output.writer("tandem", 0)
    for warning in template.warnings:
        say(f"! {warning}")
    say(f"starting {len(template.apps)} apps from {template.path}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[tuple[AppRun, Child]] = []
    pumps: list[asyncio.Task[None]] = []  # end by themselves when their `tandem run` does
    tasks: list[asyncio.Task[None]] = []  # followers of log files: cancelled at the end
    files: list[TextIO] = []
    stamp = time.strftime("%Y%m%d%H%M%S")
    try:
        for index, app in enumerate(template.apps, start=1):
            console = output.writer(app.app_id, index)
            log_file = None
            if app.app_log in ("file", "fileAndConsole"):
                app.log_dir.mkdir(parents=True, exist_ok=True)
                log_path = app.log_dir / f"{app.app_id}_app_{stamp}.log"
                log_file = log_path.open("w")
                files.append(log_file)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tandem.cli.main",
                "run",
                *app.args,
                cwd=app.app_dir,
                env={**os.environ, **app.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Its own group: Ctrl-C reaches us, and we stop each app in order.
                start_new_session=True,
            )
            children.append((app, Child(app.app_id, proc, None)))
            assert proc.stdout is not None
            shown = console if app.app_log in ("console", "fileAndConsole") else None
            pumps.append(asyncio.create_task(_pump(proc.stdout, shown, log_file)))
            if app.daprd_log in ("console", "fileAndConsole"):
                runtime_log = home.logs_dir / f"{app.app_id}.runtime.log"
                daprd = output.writer(f"{app.app_id} daprd", index)
                tasks.append(asyncio.create_task(_follow(runtime_log, daprd, _size(runtime_log))))
        waits = [asyncio.ensure_future(child.wait()) for _, child in children]
        stopper = asyncio.ensure_future(stop.wait())
        pending = set(waits)
        while pending and not stop.is_set():
            _, pending = await asyncio.wait(
                {*pending, stopper}, return_when=asyncio.FIRST_COMPLETED
            )
            pending.discard(stopper)
        stopper.cancel()
        if stop.is_set():
            say("stopping every app and sidecar")
        # Stop in reverse order of start; each `tandem run` drains its app first.
        await asyncio.gather(
            *(child.stop(STOP_TIMEOUT) for _, child in reversed(children)),
            return_exceptions=True,
        )
        if pumps:
            await asyncio.wait(pumps, timeout=5)  # the last lines of each app first
        codes = [child.proc.returncode or 0 for _, child in children]
        for app, child in children:
            say(f"{app.app_id} exited with code {child.proc.returncode}")
        return 0 if stop.is_set() else next((c for c in codes if c != 0), 0)
    finally:
        for _, child in children:
            if not child.exited:
                await child.stop(STOP_TIMEOUT)
        if pumps:
            await asyncio.wait(pumps, timeout=5)  # the last lines of each app
        for task in [*pumps, *tasks]:
            task.cancel()
        await asyncio.gather(*pumps, *tasks, return_exceptions=True)
        for f in files:
            with contextlib.suppress(OSError):
                f.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
