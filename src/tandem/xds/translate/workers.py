"""Runtime workers (``tandem run --runtime-workers N``): the stateless API paths to every
runtime process, everything else to worker 0, the owner (docs/design/runtime-workers.md).

The split is made by listing what *may* go to any worker; a path not listed here keeps the
route it had with one runtime (the owner's clusters ``tandem_runtime`` and
``tandem_runtime_http``), so a new API is single-owner until someone adds it here. The same
list serves the three ways in: the HTTP/1.1 door (a route to ``tandem_runtime_http_workers``),
the ext_proc door (a route whose ext_proc filter talks to ``tandem_runtime_workers``) and the
gRPC API's unary methods (bridged to the HTTP door, or with ext_proc to the workers' grpc.aio).

Health: the worker clusters are health checked in the bootstrap (a dead worker leaves the
rotation within a second) and these routes retry a request whose connection could not be
made on another worker (nothing reached the dead one, so any method may be retried).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, grpc_service_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import wrappers_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import pack, seconds, set_header
from tandem.xds.translate.ext_proc import MAX_MESSAGE_TIMEOUT_SECONDS
from tandem.xds.translate.names import (
    EXT_PROC_FILTER,
    METADATA_APP_ID,
    RUNTIME_HTTP_WORKERS_CLUSTER,
    RUNTIME_WORKERS_CLUSTER,
)

# Dapr HTTP API paths any worker serves (prefix match unless a regex): the building blocks
# whose state lives in the component (state, pub/sub publishing, output bindings, secrets,
# configuration reads, crypto, conversation, locks). Health and metadata stay with the
# owner: only it knows the app's readiness, subscriptions and actors.
HTTP_PREFIXES = (
    "/v1.0/state/",
    "/v1.0-alpha1/state/",  # query
    "/v1.0/publish/",
    "/v1.0-alpha1/publish/bulk/",
    "/v1.0/bindings/",
    "/v1.0/secrets/",
    "/v1.0/crypto/",
    "/v1.0-alpha1/crypto/",
    "/v1.0-alpha1/subtlecrypto/",
    "/v1.0-alpha1/conversation/",
    "/v1.0-alpha2/conversation/",
    "/v1.0-alpha1/lock/",
    "/v1.0-alpha1/unlock/",
)
# Reading a configuration item; its subscribe and unsubscribe (one more segment) stay with
# the owner, which runs the subscriptions.
HTTP_REGEXES = (r"/v1\.0(-alpha1)?/configuration/[^/]+",)
# Unary methods of dapr.proto.runtime.v1.Dapr any worker serves (the same blocks).
GRPC_METHODS = (
    "GetState",
    "GetBulkState",
    "SaveState",
    "DeleteState",
    "DeleteBulkState",
    "ExecuteStateTransaction",
    "QueryStateAlpha1",
    "PublishEvent",
    "BulkPublishEvent",
    "BulkPublishEventAlpha1",
    "InvokeBinding",
    "GetSecret",
    "GetBulkSecret",
    "GetConfiguration",
    "GetConfigurationAlpha1",
    "TryLockAlpha1",
    "UnlockAlpha1",
    "ConverseAlpha1",
    "ConverseAlpha2",
    "SubtleGetKeyAlpha1",
    "SubtleEncryptAlpha1",
    "SubtleDecryptAlpha1",
    "SubtleWrapKeyAlpha1",
    "SubtleUnwrapKeyAlpha1",
    "SubtleSignAlpha1",
    "SubtleVerifyAlpha1",
)
DAPR_SERVICE = "/dapr.proto.runtime.v1.Dapr/"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"


def enabled(sidecar: Sidecar) -> bool:
    return sidecar.runtime_workers > 1


def _retry(sidecar: Sidecar) -> rc.RetryPolicy:
    """Another worker when the connection to one could not be made (the request never left)."""
    return rc.RetryPolicy(
        retry_on="connect-failure",
        num_retries=wrappers_pb2.UInt32Value(value=sidecar.runtime_workers),
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name=PREVIOUS_HOSTS,
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=3,
    )


def _matches() -> list[tuple[str, rc.RouteMatch]]:
    out = [(p, rc.RouteMatch(prefix=p)) for p in HTTP_PREFIXES]
    out += [(r, rc.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex=r))) for r in HTTP_REGEXES]
    return out


def _ext_proc_to_workers(sidecar: Sidecar) -> ext_proc_pb2.ExtProcPerRoute:
    """The route's ext_proc side stream goes to any worker (same metadata as the filter's)."""
    return ext_proc_pb2.ExtProcPerRoute(
        overrides=ext_proc_pb2.ExtProcOverrides(
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=RUNTIME_WORKERS_CLUSTER
                ),
                initial_metadata=[base_pb2.HeaderValue(key=METADATA_APP_ID, value=sidecar.app_id)],
            )
        )
    )


def http_routes(sidecar: Sidecar, ext_proc_tripwire: rc.DirectResponseAction) -> list[rc.Route]:
    """``dapr_http``'s routes for the stateless paths, placed just before its catch-all.
    With ext_proc the route only names the workers' processor; ext_proc answers, and
    ``ext_proc_tripwire`` is what the catch-all would answer if it stepped aside."""
    if not enabled(sidecar):
        return []
    out = []
    for text, match in _matches():
        name = f"runtime-workers:{text}"
        if sidecar.api_transport == "ext_proc":
            route = rc.Route(name=name, match=match, direct_response=ext_proc_tripwire)
            route.typed_per_filter_config[EXT_PROC_FILTER].CopyFrom(
                pack(_ext_proc_to_workers(sidecar))
            )
        else:
            # As the catch-all route to the owner (routes._runtime_route), to any worker.
            route = rc.Route(
                name=name,
                match=match,
                route=rc.RouteAction(
                    cluster=RUNTIME_HTTP_WORKERS_CLUSTER,
                    timeout=seconds(MAX_MESSAGE_TIMEOUT_SECONDS),
                    retry_policy=_retry(sidecar),
                ),
                request_headers_to_add=[set_header(METADATA_APP_ID, sidecar.app_id)],
            )
        out.append(route)
    return out


def grpc_routes(sidecar: Sidecar, bridged: rc.Route | None) -> list[rc.Route]:
    """``dapr_grpc``'s routes for the stateless unary methods, ahead of the rest. ``bridged``
    is the reverse bridge's route to the owner's HTTP door (grpc_bridge.py): each method
    gets a copy of it aimed at every worker; without the bridge (ext_proc) they go to the
    workers' grpc.aio."""
    if not enabled(sidecar):
        return []
    out = []
    for method in GRPC_METHODS:
        match = rc.RouteMatch(path=DAPR_SERVICE + method)
        if bridged is not None:
            route = rc.Route()
            route.CopyFrom(bridged)
            route.name = f"runtime-workers:{method}"
            route.match.CopyFrom(match)
            route.route.cluster = RUNTIME_HTTP_WORKERS_CLUSTER
        else:
            route = rc.Route(
                name=f"runtime-workers:{method}",
                match=match,
                route=rc.RouteAction(cluster=RUNTIME_WORKERS_CLUSTER, timeout=seconds(0)),
            )
        route.route.retry_policy.CopyFrom(_retry(sidecar))
        out.append(route)
    return out
