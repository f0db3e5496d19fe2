"""The compatibility suite: Dapr-style sample apps (tests/compat/apps, written for this
project) run with `tandem run` exactly as their READMEs would run them with `dapr run`: from
the app's folder, with the same flags, resources in ``../components``, against real Redis.

The samples are copied to a temporary folder whose component YAML points at the session's
Redis instead of ``localhost:6379``; nothing else changes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from servers import RedisServer, redis_server  # noqa: F401  (fixture re-export)

# The end-to-end harness's polling helper, shared rather than written twice.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from harness import remove_home, wait_until  # noqa: E402

APPS = Path(__file__).resolve().parent / "apps"
QUICKSTART_REDIS = "localhost:6379"
# The venv's own bin first, as in an activated venv: `python3` and `tandem` are its own.
BIN = Path(sys.executable).parent


class DaprRun:
    """One `tandem run ARGS` started from ``cwd``; its console output goes to a file."""

    def __init__(self, home: Path, cwd: Path, args: tuple[str, ...]) -> None:
        self.home = home
        self.args = args
        self.app_id = args[args.index("--app-id") + 1] if "--app-id" in args else ""
        self.output = home / f"{self.app_id or 'run'}-{os.urandom(3).hex()}.out"
        env = {
            **os.environ,
            "TANDEM_HOME": str(home),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.output, "wb") as sink:
            self.proc = subprocess.Popen(
                [str(BIN / "tandem"), "run", *args],
                cwd=cwd,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"tandem run {self.app_id} still running after {timeout:.0f}s:\n{self.text()}"
            ) from None

    def record(self) -> dict:
        """What `tandem list` knows of this run (ports included), once it is up."""
        return json.loads((self.home / "apps" / f"{self.app_id}.json").read_text())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.record()['http_port']}"

    def wait_healthy(self, timeout: float = 60.0) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"tandem run {self.app_id} exited early:\n{self.text()}")
            if not (self.home / "apps" / f"{self.app_id}.json").exists():
                return False
            try:
                return httpx.get(f"{self.base}/v1.0/healthz", timeout=2).status_code == 204
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, f"{self.app_id} to be healthy")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@pytest.fixture(scope="session")
def compat_home() -> Iterator[Path]:
    """One $TANDEM_HOME for the suite (short path: Unix sockets live under it)."""
    home = Path(tempfile.mkdtemp(prefix="tc", dir="/tmp"))
    yield home
    remove_home(home)


@pytest.fixture(scope="session")
def quickstarts(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Path:  # noqa: F811
    """The sample apps laid out as a quickstart folder, components aimed at our Redis."""
    root = tmp_path_factory.mktemp("quickstarts")
    shutil.copytree(APPS, root, dirs_exist_ok=True)
    for yaml_file in (root / "components").glob("*.yaml"):
        text = yaml_file.read_text()
        yaml_file.write_text(text.replace(QUICKSTART_REDIS, redis_server.address))
    return root


@pytest.fixture(scope="session")
def dapr_run(compat_home: Path) -> Iterator[Callable[..., DaprRun]]:
    """``dapr_run(cwd, *args)`` runs `tandem run *args` from ``cwd``; all stop at the end."""
    started: list[DaprRun] = []

    def run(cwd: Path, *args: str) -> DaprRun:
        started.append(DaprRun(compat_home, cwd, args))
        return started[-1]

    yield run
    for r in started:
        r.stop()
