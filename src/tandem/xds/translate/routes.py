"""Route configurations ``dapr_http``, ``dapr_grpc`` and ``dapr_inbound`` (first match wins)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2

from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import (
    actors,
    api_access,
    app_health,
    auth,
    grpc_bridge,
    http_endpoints,
    traffic,
    workers,
)
from tandem.xds.translate._protos import metadata, pack, seconds, set_header
from tandem.xds.translate.ext_proc import MAX_MESSAGE_TIMEOUT_SECONDS, ext_proc_disabled
from tandem.xds.translate.local_reply import APP_ID_FIELD, error_body, invoke_error_body
from tandem.xds.translate.names import (
    DAPR_GRPC,
    DAPR_HTTP,
    DAPR_INBOUND,
    EXT_PROC_FILTER,
    HEADER_APP_ID,
    HEADER_CALLEE,
    HEADER_CALLER,
    HEADER_TANDEM_CALLEE,
    METADATA_APP_ID,
    METADATA_NAMESPACE,
    ONINVOKE_PREFIX,
    RUNTIME_CLUSTER,
    RUNTIME_HTTP_CLUSTER,
    app_cluster,
)

INVOKE_PREFIX = "/v1.0/invoke/"
# Envoy's formatters cannot cut one segment out of the path, so for an unknown app in the
# path form the message quotes the (bounded) path instead of naming the id.
_UNKNOWN_PATH_MESSAGE = "failed to invoke, err: couldn't find service for %REQ(:path):256%"
_UNKNOWN_HEADER_ID = f"%REQ({HEADER_APP_ID})%"
# Upper bound on one Dapr HTTP API call proxied to the runtime (api_transport: http).
RUNTIME_TIMEOUT_SECONDS = MAX_MESSAGE_TIMEOUT_SECONDS


def _no_ext_proc(sidecar: Sidecar) -> dict[str, any_pb2.Any]:
    """Keeps a route out of ext_proc; nothing to say where ext_proc is not in the chain."""
    if sidecar.api_transport != "ext_proc":
        return {}
    return {EXT_PROC_FILTER: pack(ext_proc_disabled())}


def _keep_out_of_ext_proc(route: rc.Route, sidecar: Sidecar) -> None:
    for name, config in _no_ext_proc(sidecar).items():
        route.typed_per_filter_config[name].CopyFrom(config)


def _regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def _invoke_action(sidecar: Sidecar, target: str) -> rc.RouteAction:
    action = rc.RouteAction(
        cluster=app_cluster(target),
        # Invocations may stream or long-poll; Envoy's 15 s default would cut them.
        timeout=seconds(0),
    )
    # The caller's Resiliency and traffic policies for this app: timeouts, retries, hashing
    # (translate/resiliency.py, translate/traffic.py).
    traffic.shape_action(action, sidecar, target)
    return action


def _invoke_headers(self_id: str, target: str) -> list[base_pb2.HeaderValueOption]:
    return [set_header(HEADER_CALLER, self_id), set_header(HEADER_CALLEE, target)]


def _app_meta(app_id: str) -> base_pb2.Metadata:
    return metadata(METADATA_NAMESPACE, {APP_ID_FIELD: app_id})


def _path_invoke_route(sidecar: Sidecar, target: str) -> rc.Route:
    self_id = sidecar.app_id
    prefix = f"/v1.0/invoke/{target}/method/"
    action = _invoke_action(sidecar, target)
    # A plain prefix and its rewrite: no regex runs per call (the query string stays as sent).
    action.prefix_rewrite = "/"
    route = rc.Route(
        name=f"invoke:{target}",
        match=rc.RouteMatch(prefix=prefix),
        route=action,
        request_headers_to_add=_invoke_headers(self_id, target),
        # The caller's API token is for its own sidecar; it never travels on.
        request_headers_to_remove=[auth.API_TOKEN_HEADER],
        typed_per_filter_config=_no_ext_proc(sidecar),
        metadata=_app_meta(target),
    )
    traffic.shape_route(route, sidecar, target)  # rate limit, fault injection
    return route


def _traffic_routes(sidecar: Sidecar, mesh: Mesh, *, path_form: bool, http: bool) -> list[rc.Route]:
    """The caller's HTTPRoute rules (translate/traffic.py), made invocations like the rest."""
    out = []
    for target, route in traffic.routes(sidecar, mesh, path_form=path_form):
        route.request_headers_to_add.insert(0, set_header(HEADER_CALLER, sidecar.app_id))
        route.request_headers_to_remove.append(auth.API_TOKEN_HEADER)
        if http and not path_form:
            route.request_headers_to_remove.append(HEADER_APP_ID)
        if http:
            _keep_out_of_ext_proc(route, sidecar)
        route.metadata.CopyFrom(_app_meta(target))
        out.append(route)
    return out


def _header_match(value: str | None) -> rc.HeaderMatcher:
    if value is None:
        return rc.HeaderMatcher(name=HEADER_APP_ID, present_match=True)
    return rc.HeaderMatcher(name=HEADER_APP_ID, string_match=string_pb2.StringMatcher(exact=value))


def _header_invoke_route(sidecar: Sidecar, target: str, *, http: bool) -> rc.Route:
    self_id = sidecar.app_id
    route = rc.Route(
        name=f"invoke-header:{target}",
        match=rc.RouteMatch(prefix="/", headers=[_header_match(target)]),
        route=_invoke_action(sidecar, target),
        request_headers_to_add=_invoke_headers(self_id, target),
        request_headers_to_remove=[auth.API_TOKEN_HEADER],
        metadata=_app_meta(target),
    )
    traffic.shape_route(route, sidecar, target)
    if http:
        # Dapr strips the header on the HTTP form; ext_proc must not see invocations.
        route.request_headers_to_remove.append(HEADER_APP_ID)
        _keep_out_of_ext_proc(route, sidecar)
    return route


def _unknown_app(
    sidecar: Sidecar,
    name: str,
    match: rc.RouteMatch,
    body: substitution_format_string_pb2.SubstitutionFormatString,
) -> rc.Route:
    return rc.Route(
        name=name,
        match=match,
        direct_response=rc.DirectResponseAction(status=500, body_format=body),
        typed_per_filter_config=_no_ext_proc(sidecar),
    )


def _route_config(name: str, vhost: rc.VirtualHost) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])


def _tripwire_action() -> rc.DirectResponseAction:
    return rc.DirectResponseAction(
        status=502,
        body_format=error_body("ERR_INTERNAL", "the runtime did not answer this API request"),
    )


def _runtime_route(sidecar: Sidecar, name: str, match: rc.RouteMatch) -> rc.Route:
    """A Dapr HTTP API request for the runtime: proxied to its HTTP front door, or (ext_proc)
    a tripwire, reached only if ext_proc stepped aside (a clean close or a spurious message):
    a loud 502 beats silently routing an API call somewhere."""
    if sidecar.api_transport == "ext_proc":
        return rc.Route(name=name, match=match, direct_response=_tripwire_action())
    return rc.Route(
        name=name,
        match=match,
        route=rc.RouteAction(
            cluster=RUNTIME_HTTP_CLUSTER,
            # Like ext_proc's per-message deadline, only longer: actor and workflow calls
            # may legitimately wait (ext_proc allowed up to MAX_MESSAGE_TIMEOUT_SECONDS).
            timeout=seconds(RUNTIME_TIMEOUT_SECONDS),
        ),
        # Which sidecar is asking (one runtime could serve several); overwrites any sent.
        request_headers_to_add=[set_header(METADATA_APP_ID, sidecar.app_id)],
    )


def _token_check(sidecar: Sidecar, *, http: bool) -> list[rc.Route]:
    """With DAPR_API_TOKEN set: a 401 for a missing or wrong token, before any other route."""
    if sidecar.api_token is None:
        return []
    routes = []
    if http:
        # Health endpoints stay open (with ext_proc, ext_proc answers them first).
        routes += [
            _runtime_route(sidecar, f"health:{match.path}", match)
            for match in auth.health_matches()
        ]
    name, reply = auth.unauthorized_route()
    reject = rc.Route(
        name=name, match=auth.rejects_bad_token(sidecar.api_token), direct_response=reply
    )
    if http:
        _keep_out_of_ext_proc(reject, sidecar)
    return [*routes, reject]


def dapr_http(sidecar: Sidecar, mesh: Mesh) -> route_pb2.RouteConfiguration:
    apps = mesh.app_ids()
    routes: list[rc.Route] = _token_check(sidecar, http=True)
    for refused in api_access.http_routes(sidecar):  # spec.api allow/deny lists
        _keep_out_of_ext_proc(refused, sidecar)
        routes.append(refused)
    # Declared HTTP endpoints first: the caller named that resource (translate/http_endpoints.py).
    routes += http_endpoints.routes(sidecar, _no_ext_proc(sidecar))
    routes += _traffic_routes(sidecar, mesh, path_form=True, http=True)
    routes += [_path_invoke_route(sidecar, app) for app in apps]
    # After the apps' plain prefixes (an app id holds no `/`, so none can match a URL form):
    # an invocation of an app then runs no regex at all.
    routes += http_endpoints.url_routes(sidecar, _no_ext_proc(sidecar))
    routes += _traffic_routes(sidecar, mesh, path_form=False, http=True)
    routes += [_header_invoke_route(sidecar, app, http=True) for app in apps]
    routes.append(
        _unknown_app(
            sidecar,
            "invoke-unknown",
            rc.RouteMatch(prefix=INVOKE_PREFIX),
            error_body("ERR_DIRECT_INVOKE", _UNKNOWN_PATH_MESSAGE),
        )
    )
    routes.append(
        _unknown_app(
            sidecar,
            "invoke-header-unknown",
            rc.RouteMatch(prefix="/", headers=[_header_match(None)]),
            invoke_error_body(_UNKNOWN_HEADER_ID, f"couldn't find service: {_UNKNOWN_HEADER_ID}"),
        )
    )
    routes += workers.http_routes(sidecar, _tripwire_action())  # --runtime-workers N
    routes.append(
        _runtime_route(
            sidecar,
            "tripwire" if sidecar.api_transport == "ext_proc" else "runtime",
            rc.RouteMatch(prefix="/"),
        )
    )
    vhost = rc.VirtualHost(name=DAPR_HTTP, domains=["*"], routes=routes)
    if grpc_bridge.enabled(sidecar):
        # Only calls bridged from the gRPC port may be served as gRPC by the runtime.
        vhost.request_headers_to_remove.append(grpc_bridge.BRIDGE_HEADER)
    return _route_config(DAPR_HTTP, vhost)


def dapr_grpc(sidecar: Sidecar, mesh: Mesh) -> route_pb2.RouteConfiguration:
    # gRPC proxying keeps `dapr-app-id` (the callee's SDK may read it), unlike the HTTP form.
    routes = _token_check(sidecar, http=False)
    routes += api_access.grpc_routes(sidecar)  # spec.api allow/deny lists
    routes += _traffic_routes(sidecar, mesh, path_form=False, http=False)
    routes += [_header_invoke_route(sidecar, app, http=False) for app in mesh.app_ids()]
    routes.append(
        rc.Route(
            name="invoke-header-unknown",
            match=rc.RouteMatch(prefix="/", headers=[_header_match(None)]),
            # For gRPC callers Envoy turns this into grpc-status UNAVAILABLE + grpc-message.
            direct_response=rc.DirectResponseAction(
                status=503,
                body_format=invoke_error_body(
                    _UNKNOWN_HEADER_ID, f"couldn't find service: {_UNKNOWN_HEADER_ID}"
                ),
            ),
        )
    )
    if grpc_bridge.enabled(sidecar):
        bridged = grpc_bridge.routes()  # unary calls to the HTTP door (grpc_bridge.py)
        unary = next(r for r in bridged if r.name == grpc_bridge.ROUTE_NAME)
        routes += workers.grpc_routes(sidecar, unary) + bridged
    else:
        routes += workers.grpc_routes(sidecar, None)
    routes.append(
        rc.Route(
            name="runtime",
            match=rc.RouteMatch(prefix="/"),
            # Work-item, subscription and configuration streams live as long as the app.
            route=rc.RouteAction(cluster=RUNTIME_CLUSTER, timeout=seconds(0)),
        )
    )
    vhost = rc.VirtualHost(name=DAPR_GRPC, domains=["*"], routes=routes)
    if grpc_bridge.enabled(sidecar):
        for name, config in grpc_bridge.off().items():
            vhost.typed_per_filter_config[name].CopyFrom(config)
    return _route_config(DAPR_GRPC, vhost)


def _grpc_app_translation(sidecar: Sidecar) -> rc.Route:
    """A plain HTTP invocation of a gRPC app: the runtime turns it into ``OnInvoke`` (the one
    invocation that passes through the runtime). Always its HTTP/1.1 door, whatever the
    app-facing API transport: the sidecar of a gRPC app always has that door."""
    return rc.Route(
        name="grpc-app-oninvoke",
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(
            cluster=RUNTIME_HTTP_CLUSTER,
            # Only this handler is reachable: the method is appended under a fixed prefix.
            prefix_rewrite=ONINVOKE_PREFIX,
            timeout=seconds(0),
        ),
        request_headers_to_add=[set_header(METADATA_APP_ID, sidecar.app_id)],
        metadata=_app_meta(sidecar.app_id),
    )


def _inbound_routes(sidecar: Sidecar) -> list[rc.Route]:
    if sidecar.app_port is None:
        # Dapr answers the same way when the callee was started without an app port.
        return [
            rc.Route(
                name="no-app",
                match=rc.RouteMatch(prefix="/"),
                direct_response=rc.DirectResponseAction(
                    status=500,
                    body_format=invoke_error_body(sidecar.app_id, "app channel is not initialized"),
                ),
            )
        ]
    if not sidecar.app_speaks_grpc:
        return [
            rc.Route(
                name="local-app",
                match=rc.RouteMatch(prefix="/"),
                # Through the app health gate when health checks are on (translate/app_health.py).
                route=rc.RouteAction(
                    cluster=app_health.inbound_cluster(sidecar), timeout=seconds(0)
                ),
                metadata=_app_meta(sidecar.app_id),
            )
        ]
    # gRPC (proxied with dapr-app-id) goes straight to the app; anything else is translated.
    grpc_call = rc.HeaderMatcher(
        name="content-type", string_match=string_pb2.StringMatcher(prefix="application/grpc")
    )
    return [
        rc.Route(
            name="local-app",
            match=rc.RouteMatch(prefix="/", headers=[grpc_call]),
            # Through the app health gate when health checks are on (translate/app_health.py).
            route=rc.RouteAction(cluster=app_health.inbound_cluster(sidecar), timeout=seconds(0)),
            metadata=_app_meta(sidecar.app_id),
        ),
        _grpc_app_translation(sidecar),
    ]


def _callers(mesh: Mesh) -> list[rc.VirtualCluster]:
    """One virtual cluster per app id of the mesh, matched on the caller header its Envoy
    sets: Envoy then counts received invocations per caller (Dapr's ``source_app_id``)."""
    return [
        rc.VirtualCluster(
            name=app_id,
            headers=[
                rc.HeaderMatcher(
                    name=HEADER_CALLER, string_match=string_pb2.StringMatcher(exact=app_id)
                )
            ],
        )
        for app_id in mesh.app_ids()
    ]


def dapr_inbound(sidecar: Sidecar, mesh: Mesh) -> route_pb2.RouteConfiguration:
    token_to_add, token_to_remove = auth.inbound_token_headers(sidecar)
    vhost = rc.VirtualHost(
        name=DAPR_INBOUND,
        domains=["*"],
        routes=[*actors.inbound_routes(sidecar), *_inbound_routes(sidecar)],
        virtual_clusters=_callers(mesh),
        request_headers_to_add=[set_header(HEADER_CALLEE, sidecar.app_id), *token_to_add],
        request_headers_to_remove=token_to_remove,
        # Lets a caller prove the request went Envoy -> Envoy rather than straight to the app.
        response_headers_to_add=[set_header(HEADER_TANDEM_CALLEE, sidecar.app_id)],
    )
    return _route_config(DAPR_INBOUND, vhost)


def route_configs(sidecar: Sidecar, mesh: Mesh) -> list[route_pb2.RouteConfiguration]:
    return [dapr_http(sidecar, mesh), dapr_grpc(sidecar, mesh), dapr_inbound(sidecar, mesh)]
