"""``python -m tandem.xds --home DIR [--config FILE] [--port N] [--host 127.0.0.1] [--log-level info]``.

Serves ADS on the Unix socket ``DIR/run/xds.sock`` (see ``ads_socket_path``), an address
that survives restarts, or on TCP ``--host:--port`` when a port is given (0 = a free one).
``--await-pids`` names the ``tandem run`` processes whose sidecars were running when this
control plane was (re)started: nothing is published until they reconnect (a few seconds at
most). Runs until SIGTERM/SIGINT, which is a deliberate stop: it leaves ``DIR/stopping``
so that no ``tandem run`` restarts it. Safe to run detached (no stdin, no terminal,
SIGHUP ignored). Exit status 0 on a clean stop, 1 when another live control plane already
owns DIR, the port cannot be bound or the Configuration is invalid, 2 on bad arguments.

The mesh-wide Configuration (``spec.mtls``: ``enabled``, ``workloadCertTTL``,
``allowedClockSkew``) is ``--config FILE``, else ``DIR/config.yaml`` when it exists, else
the defaults (mTLS on, 24 h certificates, 15 min skew). The CA root and the enrolment key
live in ``DIR/ca/``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvloop

from tandem.placement.service import PlacementService
from tandem.procs import pid_alive
from tandem.resources import ResourceError
from tandem.xds import logs
from tandem.xds.controlplane import ControlPlane
from tandem.xds.identity import Identities, MtlsSettings
from tandem.xds.record import (
    ads_socket_path,
    read_info,
    remove_info,
    stopping_path,
    write_info,
)

MESH_CONFIG_FILE = "config.yaml"
# With no sidecar left, the machine's control plane goes away by itself after this long.
IDLE_EXIT_ENV = "TANDEM_CONTROL_PLANE_IDLE_EXIT"
DEFAULT_IDLE_EXIT_SECONDS = 300.0
START_GRACE_SECONDS = 30.0

log = logging.getLogger("tandem.xds")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tandem.xds", description=__doc__)
    parser.add_argument("--home", required=True, type=Path, help="TANDEM_HOME directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, help="serve ADS on TCP (0 = a free port) instead of the Unix socket"
    )
    parser.add_argument(
        "--await-pids",
        default="",
        help="comma-separated pids of the `tandem run`s whose sidecars will reconnect",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help=f"mesh-wide Configuration (spec.mtls); default: DIR/{MESH_CONFIG_FILE} if present",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=float(os.environ.get(IDLE_EXIT_ENV) or DEFAULT_IDLE_EXIT_SECONDS),
        help="exit after this many seconds with no sidecar connected (0: never; default "
        f"${IDLE_EXIT_ENV}, else {DEFAULT_IDLE_EXIT_SECONDS:g})",
    )
    parser.add_argument(
        "--kubernetes",
        action="store_true",
        help="run in a cluster: CA in a Secret, sidecars enrolled by ServiceAccount token "
        "(implied by $TANDEM_KUBERNETES=1; see docs/kubernetes.md)",
    )
    parser.add_argument("--ca-secret", default="tandem-ca", help="with --kubernetes: the CA Secret")
    parser.add_argument(
        "--leader-lease",
        default="tandem-controlplane",
        help="with --kubernetes: the Lease that elects the replica running placement",
    )
    parser.add_argument(
        "--token-audience",
        default="tandem.io/controlplane",
        help="with --kubernetes: the audience of the sidecars' projected tokens",
    )
    return parser.parse_args(argv)


async def exit_when_idle(
    control_plane: ControlPlane,
    idle_seconds: float,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Set ``stop`` once no sidecar has been connected for ``idle_seconds``. At start the
    wait is at least START_GRACE_SECONDS: the `tandem run` that started us connects its
    Envoy only after its runtime is up."""
    registry = control_plane.registry
    started = clock()
    while not stop.is_set():
        if registry.mesh().sidecars:
            idle_since = None
        elif registry.last_left is not None:
            idle_since = registry.last_left
        else:  # none came yet
            idle_since = started + max(0.0, START_GRACE_SECONDS - idle_seconds)
        if idle_since is not None and clock() - idle_since >= idle_seconds:
            log.info("no sidecar connected: stopping", extra={"idle_seconds": idle_seconds})
            stop.set()
            return
        await asyncio.sleep(min(1.0, idle_seconds / 4))


async def _run(args: argparse.Namespace) -> int:
    home: Path = args.home.expanduser().resolve()
    existing = read_info(home)
    if existing is not None and existing.pid != os.getpid() and pid_alive(existing.pid):
        log.error(
            "another control plane owns this home",
            extra={"home": str(home), "pid": existing.pid, "ads_address": existing.ads_address},
        )
        return 1
    config_path: Path | None = args.config
    if config_path is None and (home / MESH_CONFIG_FILE).is_file():
        config_path = home / MESH_CONFIG_FILE
    try:
        settings = MtlsSettings.from_configuration(config_path) if config_path else MtlsSettings()
    except ResourceError as exc:
        log.error("invalid mesh configuration", extra={"error": str(exc)})
        return 1
    cluster = None
    if args.kubernetes:
        from tandem.k8s.controlplane import cluster_parts

        try:
            cluster = await cluster_parts(
                settings,
                ca_secret_name=args.ca_secret,
                lease_name=args.leader_lease,
                audience=args.token_audience,
            )
        except Exception as exc:
            log.error(
                "cannot reach the Kubernetes API", extra={"error": f"{type(exc).__name__}: {exc}"}
            )
            return 1
        identities = cluster.identities
        await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)  # placement (emptyDir)
        # A cluster's control plane serves for good; its sidecars come and go.
        args.idle_exit = 0
    else:
        # Key generation and file I/O, once, before serving.
        identities = await asyncio.to_thread(Identities.load, home, settings)
    log.info(
        "mesh security",
        extra={
            "config": str(config_path) if config_path else None,
            "mtls": settings.enabled,
            "workload_cert_ttl_s": settings.workload_cert_ttl.total_seconds(),
            "allowed_clock_skew_s": settings.allowed_clock_skew.total_seconds(),
        },
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Detached from any terminal, a hang-up means nothing to us.
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    try:
        awaited = frozenset(int(p) for p in args.await_pids.split(",") if p.strip())
    except ValueError:
        log.error("--await-pids must be comma-separated pids", extra={"value": args.await_pids})
        return 2
    try:
        socket_path = None if args.port is not None else ads_socket_path(home)
        # Actor placement and the one scheduler share the control plane's server.
        placement = PlacementService(home)
        if cluster is None:
            await placement.start()  # in a cluster: once elected (tandem.k8s.ha)
        control_plane = ControlPlane(
            host=args.host,
            port=args.port or 0,
            identities=identities,
            socket_path=socket_path,
            awaited_pids=frozenset(p for p in awaited if pid_alive(p)),
            services=(placement, *((cluster.enrolment, cluster.resources) if cluster else ())),
            # Traffic kinds here apply to every sidecar (README "Traffic policy").
            mesh_resources=home / "resources",
            interceptors=cluster.interceptors() if cluster else (),
            # Its namespace's objects and its dapr.io/config, before its first snapshot.
            prepare=cluster.watches.prepare if cluster else None,
        )
        address = await control_plane.start()
        if cluster is not None:
            cluster.start(control_plane.registry, placement, home, stop)
    except (OSError, RuntimeError) as exc:  # grpc reports a failed bind as RuntimeError
        log.error("cannot listen", extra={"host": args.host, "port": args.port, "error": str(exc)})
        return 1
    try:
        info = write_info(home, address)
        log.info(
            "control plane ready",
            extra={"home": str(home), "awaited_sidecars": len(awaited), **info.to_json()},
        )
        idle = (
            asyncio.create_task(exit_when_idle(control_plane, args.idle_exit, stop))
            if args.idle_exit > 0
            else None
        )
        await stop.wait()
        idled_out = idle is not None and idle.done()
        if idle is not None:
            idle.cancel()
        log.info("stopping")
        if not idled_out:
            # Deliberate: the sidecars' watchers must not bring us back. After an idle exit
            # a `tandem run` starting just then may (there was no sidecar to keep us).
            stopping_path(home).touch(mode=0o600)
    finally:
        remove_info(home)
        await control_plane.stop(grace=1.0)
        await placement.stop()
        if cluster is not None:
            await cluster.close()
    # A replica that lost the lease exits non-zero: the kubelet restarts it as a follower.
    return 1 if cluster is not None and cluster.lost else 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # The chart sets it (tandem.k8s.controlplane.KUBERNETES_ENV); the k8s modules load lazily.
    args.kubernetes = args.kubernetes or os.environ.get("TANDEM_KUBERNETES", "") in ("1", "true")
    logs.configure(args.log_level)
    return uvloop.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
