"""`python -m tandem.ext_proc`: one sidecar runtime (normally started by `tandem run`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from tandem.ext_proc.runtime import DEFAULT_MAX_BODY, Runtime, RuntimeOptions, StartupError
from tandem.logs import setup_logging

log = logging.getLogger("tandem.runtime")


def parse_args(argv: list[str] | None = None) -> RuntimeOptions:
    p = argparse.ArgumentParser(prog="python -m tandem.ext_proc")
    p.add_argument("--app-id", required=True)
    p.add_argument("--socket", required=True, type=Path)
    p.add_argument("--http-socket", type=Path, help="also serve the Dapr HTTP API here (HTTP/1.1)")
    p.add_argument("--home", required=True, type=Path)
    p.add_argument("--namespace", help="load only this namespace's components (default: all)")
    p.add_argument("--resources-path", action="append", type=Path, default=[])
    p.add_argument("--config", type=Path)
    p.add_argument("--app-port", type=int)
    p.add_argument("--app-protocol", default="http", choices=["http", "grpc"])
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY)
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    setup_logging(a.log_level, "runtime")
    return RuntimeOptions(
        app_id=a.app_id,
        socket=a.socket,
        home=a.home,
        namespace=a.namespace,
        resources_paths=tuple(a.resources_path),
        config=a.config,
        app_port=a.app_port,
        app_protocol=a.app_protocol,
        max_body_bytes=a.max_body_bytes,
        http_socket=a.http_socket,
    )


async def serve(options: RuntimeOptions) -> int:
    runtime = Runtime(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopped.set)
    try:
        await runtime.start()
    except StartupError as exc:
        log.error("runtime failed to start: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            await runtime.stop(grace=0)
        return 2
    await runtime.stopped.wait()
    log.info("runtime stopping")
    await runtime.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        import uvloop

        return uvloop.run(serve(options))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without it
        return asyncio.run(serve(options))


if __name__ == "__main__":
    sys.exit(main())
