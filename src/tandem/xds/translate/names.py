"""Fixed resource names from the sidecar contract, in one place."""

from __future__ import annotations

from tandem.xds.contract import ONINVOKE_PREFIX as ONINVOKE_PREFIX

# Listeners and the route configurations they load over RDS share a name.
DAPR_HTTP = "dapr_http"
DAPR_GRPC = "dapr_grpc"
DAPR_INBOUND = "dapr_inbound"
DAPR_METRICS = "dapr_metrics"
# The app-facing API listeners again, on Unix sockets (--unix-domain-socket).
DAPR_HTTP_UDS = "dapr_http_uds"
DAPR_GRPC_UDS = "dapr_grpc_uds"
# The runtime's way to its app, through Envoy (translate/local_app.py).
APP_CHANNEL = "dapr_app_channel"

# Static clusters that live in the bootstrap, not in CDS.
RUNTIME_CLUSTER = "tandem_runtime"
# The runtime's HTTP/1.1 front door (sidecars with api_transport: http).
RUNTIME_HTTP_CLUSTER = "tandem_runtime_http"
# With `--runtime-workers N` > 1: every runtime process, for the stateless API paths
# (translate/workers.py); the two above then reach worker 0 (the owner) only.
RUNTIME_WORKERS_CLUSTER = "tandem_runtime_workers"
RUNTIME_HTTP_WORKERS_CLUSTER = "tandem_runtime_http_workers"
XDS_CLUSTER = "xds_cluster"

LOCAL_APP_CLUSTER = "local_app"
# Invocations of an app with health checks on: health-checked, via the app channel listener.
LOCAL_APP_GATED_CLUSTER = "local_app_gated"
# The sidecar's own Envoy admin (Unix socket); only /metrics reaches it (translate/metrics.py).
ADMIN_CLUSTER = "envoy_admin"

EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
ROUTER_FILTER = "envoy.filters.http.router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"

# Route metadata namespace; local-reply bodies read the app id from it.
METADATA_NAMESPACE = "tandem"

HEADER_APP_ID = "dapr-app-id"
HEADER_CALLER = "dapr-caller-app-id"
HEADER_CALLEE = "dapr-callee-app-id"
HEADER_TANDEM_CALLEE = "x-tandem-callee"
METADATA_APP_ID = "x-tandem-app-id"

LOOPBACK = "127.0.0.1"


def app_cluster(app_id: str) -> str:
    """CDS/EDS name of the cluster that reaches every live instance of ``app_id``."""
    return f"app:{app_id}"
