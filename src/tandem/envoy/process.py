"""Run one Envoy as a child process and talk to its admin socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

from tandem.envoy.admin import AdminError, AdminResponse, admin_request
from tandem.envoy.binary import envoy_binary

log = logging.getLogger("tandem.envoy")


class EnvoyError(RuntimeError):
    pass


def _die_with_parent_prefix() -> list[str]:
    """``setpriv --pdeathsig SIGTERM --`` when available: Linux then stops Envoy if its parent
    dies, so an orphan cannot keep its ADS stream (and its registry entry) alive.

    Not a ``preexec_fn``: that forces a real fork() of a process full of gRPC threads, and the
    forked child can crash before it execs.
    """
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "SIGTERM", "--"] if setpriv else []


# Local-filesystem calls of microseconds; kept out of the coroutines on purpose.
def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def _open_log(path: Path | None) -> IO[bytes] | None:
    return None if path is None else open(path, "ab")  # noqa: SIM115 (handed to the child)


def _admin_socket_of(config: Mapping[str, Any]) -> str | None:
    try:
        path = config["admin"]["address"]["pipe"]["path"]
    except (KeyError, TypeError):
        return None
    return str(path) if path else None


class EnvoyProcess:
    """An Envoy child: ``start()``, ``wait_ready()``, ``stats()``, ``stop()``.

    Give the bootstrap as a dict (passed with ``--config-yaml``) or as a file path. The admin
    interface must be on a Unix socket; it is read from the config dict when not given.
    Always runs with ``--disable-hot-restart`` so several Envoys can share a machine.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        config_path: Path | None = None,
        admin_socket: str | Path | None = None,
        log_level: str = "warn",
        log_path: Path | None = None,
        binary: Path | None = None,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = True,
    ) -> None:
        if (config is None) == (config_path is None):
            raise ValueError("give exactly one of config and config_path")
        admin = str(admin_socket) if admin_socket else None
        if admin is None and config is not None:
            admin = _admin_socket_of(config)
        if admin is None:
            raise ValueError("the admin socket path is needed (admin.address.pipe.path)")
        self.admin_socket = admin
        self._config = config
        self._config_path = config_path
        self._log_level = log_level
        self.log_path = log_path
        self._binary = binary
        self._extra_args = tuple(extra_args)
        self._die_with_parent = die_with_parent
        self._proc: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        binary = self._binary or envoy_binary()
        prefix = _die_with_parent_prefix() if self._die_with_parent else []
        args = [*prefix, str(binary), "--disable-hot-restart", "--log-level", self._log_level]
        if self._config is not None:
            # JSON is YAML; no temp file to clean up.
            args += ["--config-yaml", json.dumps(self._config, separators=(",", ":"))]
        else:
            args += ["--config-path", str(self._config_path)]
        return [*args, *self._extra_args]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        if self._proc is not None:
            raise EnvoyError("already started")
        # A stale socket file from a crashed run would make Envoy fail to bind the admin.
        _remove(self.admin_socket)
        output = _open_log(self.log_path)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        finally:
            if output is not None:
                output.close()
        log.debug("envoy started", extra={"pid": self._proc.pid, "admin": self.admin_socket})

    def log_tail(self, limit: int = 4000) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    async def admin(self, path: str, *, method: str = "GET", timeout: float = 5.0) -> AdminResponse:
        return await admin_request(self.admin_socket, path, method=method, timeout=timeout)

    async def wait_ready(self, timeout: float = 15.0, listeners: Iterable[str] = ()) -> None:
        """Poll until the admin says LIVE (initial xDS fetched) and the named listeners exist.

        Raises EnvoyError if Envoy exits first or the deadline passes.
        """
        wanted = set(listeners)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.01
        last = "no answer from the admin socket"
        while True:
            if self._proc is None:
                raise EnvoyError("not started")
            if self._proc.returncode is not None:
                raise EnvoyError(
                    f"envoy exited with {self._proc.returncode} before it was ready\n"
                    + self.log_tail()
                )
            try:
                ready = await self.admin("/ready", timeout=1.0)
                if ready.status == 200:
                    names = await self.listener_names() if wanted else set()
                    if wanted <= names:
                        return
                    last = f"listeners so far: {sorted(names)}"
                else:
                    last = f"/ready: {ready.status} {ready.text().strip()}"
            except AdminError as exc:
                last = str(exc)
            if loop.time() >= deadline:
                raise EnvoyError(f"envoy not ready after {timeout}s: {last}\n" + self.log_tail())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def listener_names(self) -> set[str]:
        response = await self.admin("/listeners?format=json")
        statuses = response.json().get("listener_statuses", [])
        return {str(entry.get("name")) for entry in statuses}

    async def stats(self, filter: str | None = None) -> dict[str, int]:
        """Counters and gauges by name (histograms and text readouts left out); ``filter`` is
        Envoy's regex on the stat name."""
        query = "/stats?format=json"
        if filter:
            query += "&filter=" + quote(filter, safe="")
        response = await self.admin(query)
        if response.status != 200:
            raise AdminError(f"/stats: {response.status} {response.text()[:200]}")
        out: dict[str, int] = {}
        for entry in response.json().get("stats", []):
            value = entry.get("value")
            if "name" in entry and isinstance(value, int) and not isinstance(value, bool):
                out[str(entry["name"])] = value
        return out

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        _remove(self.admin_socket)
        return proc.returncode

    async def __aenter__(self) -> EnvoyProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
