"""Child processes of a sidecar: started with their output in a log file, stopped in order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tandem.cli.exits import describe_exit, log_tail
from tandem.procs import die_with_parent

__all__ = ["Child", "NotReady", "describe_exit"]


class Child:
    def __init__(
        self,
        name: str,
        proc: asyncio.subprocess.Process,
        log_path: Path | None,
        log_offset: int = 0,
    ) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        # Logs are appended to across runs: this run's lines start here.
        self.log_offset = log_offset

    @classmethod
    async def start(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None,
        env: Mapping[str, str] | None = None,
        own_session: bool = True,
        umask: int = -1,
    ) -> Child:
        offset = 0
        if log_path is not None:
            log_file = open(log_path, "ab")  # noqa: SIM115, ASYNC230 - a local append-open, handed to the child
            offset = log_file.seek(0, os.SEEK_END)
            out: int | object = log_file
        else:
            log_file = None
            out = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL if own_session else None,
                stdout=out,  # type: ignore[arg-type]
                stderr=out,  # type: ignore[arg-type]
                env=dict(env) if env is not None else None,
                start_new_session=own_session,
                preexec_fn=die_with_parent if own_session else None,
                umask=umask,  # -1: inherit ours
            )
        finally:
            if log_file is not None:
                log_file.close()
        return cls(name, proc, log_path, offset)

    @property
    def exited(self) -> bool:
        return self.proc.returncode is not None

    async def wait(self) -> int:
        return await self.proc.wait()

    def signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def stop(self, timeout: float = 5.0, sig: int | None = None) -> int:
        """``sig`` (default SIGTERM), then SIGKILL after ``timeout``."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        self.signal(signal.SIGTERM if sig is None else sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, self.log_offset, lines)

    async def wait_until(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        """Until ``ready()`` holds; NotReady, saying why, if this child exits first or
        ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.exited:
                raise NotReady(
                    f"the {self.name} {describe_exit(self.proc.returncode)} before {what} "
                    f"appeared:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.01)
        raise NotReady(f"timed out waiting for {what}; see {self.log_path}")


class NotReady(Exception):
    """A child did not get ready (it exited, or took too long); the message says which."""


def pid_of_self() -> int:
    return os.getpid()
