"""The Configuration's ``spec.api.allowed`` / ``spec.api.denied``, enforced by Envoy.

A rule names an API (``state``), its version and its protocol, as Dapr's do: HTTP rules
match the path's version and first segment (``/v1.0/state/...``), gRPC rules the Dapr
service's methods of that API and version (``GetState`` is ``state`` ``v1``,
``QueryStateAlpha1`` is ``state`` ``v1alpha1``). With an allow list, every API it does not
name is refused; a deny list refuses what it names. Refusals are routes placed before all
others: an HTTP call answers 404 with Dapr's JSON error, as a route that does not exist, and
a gRPC call ends with PERMISSION_DENIED. Health endpoints always answer. Rules without a
version or a protocol match nothing (``tandem.resources.config_status`` warns about them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dapr.proto.runtime.v1 import dapr_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc

from tandem.xds.ir import Sidecar
from tandem.xds.translate.api_logging import ROUTE_TEMPLATES
from tandem.xds.translate.local_reply import error_body

# gRPC PERMISSION_DENIED
_PERMISSION_DENIED = "7"
_ALWAYS_OPEN = frozenset({"healthz"})

# (fragment of a gRPC method name, API name) in matching order: the first fragment found wins.
_GRPC_APIS = (
    ("Actor", "actors"),
    ("Reminder", "actors"),
    ("Timer", "actors"),
    ("SubscribeTopicEvents", "subscribe"),
    ("State", "state"),
    ("Publish", "publish"),
    ("InvokeService", "invoke"),
    ("InvokeBinding", "bindings"),
    ("Secret", "secrets"),
    ("Metadata", "metadata"),
    ("Configuration", "configuration"),
    ("Lock", "lock"),
    ("Workflow", "workflows"),
    ("Shutdown", "shutdown"),
    ("crypt", "crypto"),
    ("Job", "jobs"),
    ("Converse", "conversation"),
)
_GRPC_VERSION = re.compile(r"(Alpha|Beta)(\d+)$")


def http_apis() -> list[tuple[str, str]]:
    """(version, name) of every Dapr HTTP API, from the route templates."""
    seen: dict[tuple[str, str], None] = {}
    for template in ROUTE_TEMPLATES:
        version, name = template.strip("/").split("/")[:2]
        seen[(version, name)] = None
    return list(seen)


def grpc_apis() -> list[tuple[str, str, str]]:
    """(version, name, method path) of the Dapr gRPC service's methods."""
    service = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]
    out = []
    for method in service.methods:
        name = next((api for fragment, api in _GRPC_APIS if fragment in method.name), None)
        if name is None:
            continue
        m = _GRPC_VERSION.search(method.name)
        version = f"v1{m.group(1).lower()}{m.group(2)}" if m else "v1"
        out.append((version, name, f"/{service.full_name}/{method.name}"))
    return out


def _refused(
    rules: Iterable[tuple[str, str]], allowed: set[tuple[str, str]] | None, denied: set
) -> set[tuple[str, str]]:
    out = set()
    for version, name in rules:
        key = (name, version)
        if name in _ALWAYS_OPEN:
            continue
        if (allowed is not None and key not in allowed) or key in denied:
            out.add((version, name))
    return out


def _rules(sidecar: Sidecar, protocol: str) -> tuple[set[tuple[str, str]] | None, set]:
    access = sidecar.api_access
    assert access is not None
    allowed = {(r.name, r.version) for r in access.allowed if r.protocol == protocol}
    denied = {(r.name, r.version) for r in access.denied if r.protocol == protocol}
    # An allow list that names no API of this protocol leaves that protocol alone, as in Dapr.
    return (allowed or None), denied


def http_routes(sidecar: Sidecar) -> list[rc.Route]:
    if sidecar.api_access is None:
        return []
    allowed, denied = _rules(sidecar, "http")
    routes = []
    for version, name in sorted(_refused(http_apis(), allowed, denied)):
        for match in (
            rc.RouteMatch(path=f"/{version}/{name}"),
            rc.RouteMatch(prefix=f"/{version}/{name}/"),
        ):
            routes.append(
                rc.Route(
                    name=f"api-refused:{version}/{name}",
                    match=match,
                    direct_response=rc.DirectResponseAction(
                        status=404,
                        body_format=error_body(
                            "ERR_BAD_REQUEST",
                            "no route for %REQ(:METHOD)% %REQ(:PATH)%",
                        ),
                    ),
                )
            )
    return routes


def grpc_routes(sidecar: Sidecar) -> list[rc.Route]:
    if sidecar.api_access is None:
        return []
    allowed, denied = _rules(sidecar, "grpc")
    apis = grpc_apis()
    refused = _refused({(v, n) for v, n, _ in apis}, allowed, denied)
    routes = []
    for version, name, path in apis:
        if (version, name) not in refused:
            continue
        message = f"access to method {path} is not allowed by the app's Configuration"
        routes.append(
            rc.Route(
                name=f"api-refused:{path}",
                match=rc.RouteMatch(path=path),
                # A trailers-only gRPC answer: status and message in the headers.
                direct_response=rc.DirectResponseAction(status=200),
                response_headers_to_add=[
                    _header("content-type", "application/grpc"),
                    _header("grpc-status", _PERMISSION_DENIED),
                    _header("grpc-message", message),  # spaces need no escaping
                ],
            )
        )
    return routes


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
