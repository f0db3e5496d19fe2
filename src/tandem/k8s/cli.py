"""`tandem injector`: the sidecar injector on its own (tests, clusters that split roles)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from tandem import __version__

DEFAULT_IMAGE = f"ghcr.io/tandem-runtime/tandem:{__version__}"
DEFAULT_CONTROL_PLANE = "tandem-controlplane.tandem-system.svc:50005"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser("injector", help="serve the Kubernetes sidecar injector (POST /mutate)")
    i.add_argument("--address", required=True, help="HOST:PORT to serve HTTPS on")
    i.add_argument("--tls-cert", required=True, type=Path, help="PEM certificate (chain)")
    i.add_argument("--tls-key", required=True, type=Path, help="PEM private key")
    i.add_argument(
        "--sidecar-image",
        default=os.environ.get("TANDEM_SIDECAR_IMAGE") or DEFAULT_IMAGE,
        help="image of the injected containers (default: $TANDEM_SIDECAR_IMAGE or "
        f"{DEFAULT_IMAGE}); dapr.io/sidecar-image overrides it per pod",
    )
    i.add_argument("--image-pull-policy", default="IfNotPresent")
    i.add_argument(
        "--control-plane-address",
        default=os.environ.get("TANDEM_CONTROL_PLANE_ADDRESS") or DEFAULT_CONTROL_PLANE,
        help="HOST:PORT of the control plane's xDS Service",
    )
    i.add_argument(
        "--placement-address",
        default=os.environ.get("TANDEM_PLACEMENT_ADDRESS"),
        help="HOST:PORT of the Service of the leading control-plane replica (placement, "
        "reminders, jobs); default: --control-plane-address",
    )
    i.add_argument("--token-audience", default="tandem.io/controlplane")
    i.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(a: argparse.Namespace) -> int:
    # Here, not at the top: every `tandem` command builds this parser, and only the injector
    # needs these (and the webhook server below).
    from tandem.envoy.bootstrap import parse_address
    from tandem.k8s.inject import InjectorSettings
    from tandem.k8s.webhook import serve
    from tandem.logs import setup_logging

    try:
        host, port = parse_address(a.address)
        parse_address(a.control_plane_address)
        if a.placement_address:
            parse_address(a.placement_address)
    except ValueError as exc:
        print(f"tandem injector: {exc}", file=sys.stderr)
        return 2
    for path in (a.tls_cert, a.tls_key):
        if not path.is_file():
            print(f"tandem injector: {path}: no such file", file=sys.stderr)
            return 2
    setup_logging(a.log_level, "injector")
    settings = InjectorSettings(
        image=a.sidecar_image,
        control_plane_address=a.control_plane_address,
        placement_address=a.placement_address,
        pull_policy=a.image_pull_policy,
        token_audience=a.token_audience,
    )

    async def main() -> None:
        task = asyncio.ensure_future(serve(settings, host, port, a.tls_cert, a.tls_key))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0
