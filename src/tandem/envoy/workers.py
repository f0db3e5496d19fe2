"""The bootstrap's clusters of every runtime process (``tandem run --runtime-workers N``).

``tandem_runtime`` and ``tandem_runtime_http`` keep reaching worker 0, the owner; these two
add every process (the owner first) for the stateless API paths routed to them
(``tandem.xds.translate.workers``). Least-request balancing, because calls differ widely in
cost; a TCP health check each second takes a dead worker out of rotation until it is back,
and no panic routing: with every worker down, a call fails rather than waits on a dead one.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

RUNTIME_CLUSTER = "tandem_runtime"
RUNTIME_HTTP_CLUSTER = "tandem_runtime_http"
# Their names in tandem.xds.translate.names (RUNTIME_WORKERS_CLUSTER, ...); the envoy
# package keeps its own copy as bootstrap.py does, to stay free of the control plane's.
WORKERS = {
    RUNTIME_CLUSTER: "tandem_runtime_workers",
    RUNTIME_HTTP_CLUSTER: "tandem_runtime_http_workers",
}
HEALTH_CHECK_INTERVAL = "1s"


def _endpoint(path: str) -> dict[str, Any]:
    return {"endpoint": {"address": {"pipe": {"path": path}}}}


def add_worker_clusters(
    config: dict[str, Any],
    worker_sockets: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
) -> None:
    """Append to ``config`` (a rendered bootstrap) a copy of each runtime cluster it has,
    with the owner's endpoint followed by each worker's (gRPC socket, HTTP socket)."""
    from tandem.envoy.bootstrap import check_socket_path

    clusters: list[dict[str, Any]] = config["static_resources"]["clusters"]
    by_name = {c["name"]: c for c in clusters}
    for index, (owner_name, name) in enumerate(WORKERS.items()):
        owner = by_name.get(owner_name)
        if owner is None:
            continue  # no HTTP door in this bootstrap
        cluster = copy.deepcopy(owner)
        cluster["name"] = name
        endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        for sockets in worker_sockets:
            path = check_socket_path(os.fspath(sockets[index]), f"runtime worker ({name})")
            endpoints.append(_endpoint(path))
        cluster["load_assignment"]["cluster_name"] = name
        cluster["lb_policy"] = "LEAST_REQUEST"
        cluster["common_lb_config"] = {"healthy_panic_threshold": {"value": 0}}
        cluster["health_checks"] = [
            {
                "timeout": HEALTH_CHECK_INTERVAL,
                "interval": HEALTH_CHECK_INTERVAL,
                # Idle clusters are checked as often (Envoy's default then is 60 s).
                "no_traffic_interval": HEALTH_CHECK_INTERVAL,
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "tcp_health_check": {},
            }
        ]
        # A connection refused (a worker just killed) takes it out at once, before the next
        # health check: ext_proc side streams are never retried, so this bounds the calls
        # that fail to the ones already on their way. At least one process stays in.
        processes = len(worker_sockets) + 1
        cluster["outlier_detection"] = {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": 1,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_consecutive_5xx": 0,
            "enforcing_success_rate": 0,
            "enforcing_local_origin_success_rate": 0,
            "base_ejection_time": HEALTH_CHECK_INTERVAL,
            "max_ejection_percent": 100 * (processes - 1) // processes,
        }
        clusters.append(cluster)
