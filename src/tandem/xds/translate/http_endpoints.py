"""HTTPEndpoint and invocation by URL: non-Dapr HTTP services reached through Envoy.

``/v1.0/invoke/<name>/method/<path>`` (or header ``dapr-app-id: <name>``) goes to
``<baseUrl>/<path>`` through cluster ``endpoint:<name>`` (DNS-resolved; TLS with SNI for an
https base URL, verified against ``clientTLS.rootCA`` or the system's CA bundle; the
client certificate). Header values and clientTLS documents given as ``secretKeyRef`` are the
values `tandem run` resolved (blocks/secrets/endpoints.py). The endpoint's ``headers`` are added
to every request; the caller's ``targets.apps.<name>`` Resiliency applies as for an app.
``/v1.0/invoke/http(s)://host:port/method/<path>`` needs no resource: Envoy's dynamic
forward proxy resolves the host per request. Pure, apart from reading where the system's
CA bundle lives.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_filter_pb2,
)
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2

from tandem.resources import HTTPEndpoint, TLSDocument
from tandem.resources.resiliency import app_policy
from tandem.xds.ir import Sidecar
from tandem.xds.translate import auth, resiliency
from tandem.xds.translate._protos import (
    HPO_KEY,
    metadata,
    pack,
    seconds,
    set_header,
    socket_address,
)
from tandem.xds.translate.local_reply import APP_ID_FIELD
from tandem.xds.translate.names import (
    HEADER_APP_ID,
    HEADER_CALLER,
    METADATA_NAMESPACE,
)
from tandem.xds.translate.tls import TLS_TRANSPORT_SOCKET

CLUSTER_PREFIX = "endpoint:"
CONNECT_TIMEOUT_SECONDS = 5
# Where OpenSSL looks for the system's trusted CAs (Dapr verifies with the system roots).
_FALLBACK_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def cluster_name(endpoint: str) -> str:
    return f"{CLUSTER_PREFIX}{endpoint}"


@dataclass(frozen=True, slots=True)
class _Target:
    tls: bool
    host: str
    port: int
    authority: str
    base_path: str  # without the trailing slash


def _target(ep: HTTPEndpoint) -> _Target:
    parts = urlsplit(ep.base_url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    return _Target(tls, host, port, parts.netloc, parts.path.rstrip("/"))


def system_ca_file() -> str:
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile or _FALLBACK_CA_FILE


def _document(sidecar: Sidecar, ep: HTTPEndpoint, name: str, doc: TLSDocument | None) -> str | None:
    """A clientTLS PEM: inline, or the secret `tandem run` resolved for it."""
    if doc is None:
        return None
    if doc.secret_key_ref is not None:
        return sidecar.endpoint_secret(ep.name, f"clientTLS.{name}")
    return doc.value or None


def _tls(sidecar: Sidecar, ep: HTTPEndpoint, target: _Target) -> base_pb2.TransportSocket:
    tls = ep.client_tls
    root = _document(sidecar, ep, "rootCA", tls.root_ca) if tls else None
    trusted = (
        base_pb2.DataSource(inline_string=root)
        if root
        else base_pb2.DataSource(filename=system_ca_file())
    )
    common = tls_pb2.CommonTlsContext(
        validation_context=common_pb2.CertificateValidationContext(trusted_ca=trusted),
        alpn_protocols=["http/1.1"],
    )
    cert = _document(sidecar, ep, "certificate", tls.certificate) if tls else None
    key = _document(sidecar, ep, "privateKey", tls.private_key) if tls else None
    if cert and key:
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_string=cert),
                private_key=base_pb2.DataSource(inline_string=key),
            )
        )
    context = tls_pb2.UpstreamTlsContext(
        sni=target.host,
        common_tls_context=common,
        # Dapr's default (RenegotiateNever); the other choices are warned about.
        allow_renegotiation=bool(tls and tls.renegotiation not in (None, "RenegotiateNever")),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def clusters(sidecar: Sidecar) -> list[cluster_pb2.Cluster]:
    out = []
    for ep in sidecar.http_endpoints:
        target = _target(ep)
        name = cluster_name(ep.name)
        cluster = cluster_pb2.Cluster(
            name=name,
            type=cluster_pb2.Cluster.STRICT_DNS,
            dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
            connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
            load_assignment=endpoint_pb2.ClusterLoadAssignment(
                cluster_name=name,
                endpoints=[
                    endpoint_components_pb2.LocalityLbEndpoints(
                        lb_endpoints=[
                            endpoint_components_pb2.LbEndpoint(
                                endpoint=endpoint_components_pb2.Endpoint(
                                    address=socket_address(target.host, target.port)
                                )
                            )
                        ]
                    )
                ],
            ),
        )
        if target.tls:
            cluster.transport_socket.CopyFrom(_tls(sidecar, ep, target))
        resiliency.apply_to_cluster(cluster, app_policy(sidecar.resiliencies, ep.name))
        out.append(cluster)
    return out


def _action(sidecar: Sidecar, ep: HTTPEndpoint, target: _Target) -> rc.RouteAction:
    action = rc.RouteAction(
        cluster=cluster_name(ep.name),
        host_rewrite_literal=target.authority,
        timeout=seconds(0),  # as app invocations: may stream or long-poll
    )
    resiliency.apply_to_route(action, app_policy(sidecar.resiliencies, ep.name))
    return action


def _headers(sidecar: Sidecar, ep: HTTPEndpoint) -> list[base_pb2.HeaderValueOption]:
    headers = [set_header(HEADER_CALLER, sidecar.app_id)]
    for h in ep.headers:
        value = (
            h.value
            if h.secret_key_ref is None
            else sidecar.endpoint_secret(ep.name, f"header:{h.name}")
        )
        if value is not None:
            headers.append(set_header(h.name, value))
    return headers


def routes(sidecar: Sidecar, no_ext_proc: Mapping[str, any_pb2.Any]) -> list[rc.Route]:
    """Path-form and header-form routes of the Dapr HTTP API for every HTTP endpoint (the
    gRPC API proxies gRPC between sidecars; a plain HTTP service has no part in it)."""
    out = []
    for ep in sidecar.http_endpoints:
        target = _target(ep)
        prefix = f"^/v1\\.0/invoke/{re.escape(ep.name)}/method/"
        meta = metadata(METADATA_NAMESPACE, {APP_ID_FIELD: ep.name})
        action = _action(sidecar, ep, target)
        action.regex_rewrite.CopyFrom(
            regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex=prefix),
                substitution=target.base_path + "/",
            )
        )
        path_route = rc.Route(
            name=f"endpoint:{ep.name}",
            match=rc.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex=prefix + ".*")),
            route=action,
            request_headers_to_add=_headers(sidecar, ep),
            request_headers_to_remove=[auth.API_TOKEN_HEADER],
            metadata=meta,
        )
        header_route = rc.Route(
            name=f"endpoint-header:{ep.name}",
            match=rc.RouteMatch(
                prefix="/",
                headers=[
                    rc.HeaderMatcher(
                        name=HEADER_APP_ID,
                        string_match=string_pb2.StringMatcher(exact=ep.name),
                    )
                ],
            ),
            route=_action(sidecar, ep, target),
            request_headers_to_add=_headers(sidecar, ep),
            request_headers_to_remove=[auth.API_TOKEN_HEADER, HEADER_APP_ID],
            metadata=meta,
        )
        if target.base_path:
            header_route.route.prefix_rewrite = target.base_path + "/"
        for route in (path_route, header_route):
            for name, config in no_ext_proc.items():
                route.typed_per_filter_config[name].CopyFrom(config)
        out += [path_route, header_route]
    return out


def warnings(ep: HTTPEndpoint) -> list[str]:
    """What of this HTTPEndpoint is not applied, one line each (by file and field)."""
    out = []
    where = f"{ep.source}: HTTPEndpoint {ep.name}"
    tls = ep.client_tls
    if tls is not None:
        if (tls.certificate is None) != (tls.private_key is None):
            out.append(
                f"{where}: spec.clientTLS needs both certificate and privateKey; "
                "no client certificate is presented"
            )
        if tls.renegotiation == "RenegotiateOnceAsClient":
            out.append(
                f"{where}: spec.clientTLS.renegotiation: Envoy allows renegotiation freely "
                "or not at all; RenegotiateOnceAsClient becomes freely"
            )
    if urlsplit(ep.base_url).query:
        out.append(f"{where}: spec.baseUrl: the query string is not sent")
    return out


# -- By URL: /v1.0/invoke/http://host:port/method/<path>, any host, no resource needed ------

DFP_FILTER = "envoy.filters.http.dynamic_forward_proxy"
_DNS_CACHE = "tandem_url_invoke"
URL_CLUSTER_PREFIX = "url:"


def _dns_cache() -> dns_cache_pb2.DnsCacheConfig:
    return dns_cache_pb2.DnsCacheConfig(
        name=_DNS_CACHE, dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED
    )


def url_filter() -> hcm_pb2.HttpFilter:
    """Resolves the host of a by-URL invocation; idle on every other route (it acts only
    for dynamic-forward-proxy clusters)."""
    config = dfp_filter_pb2.FilterConfig(dns_cache_config=_dns_cache())
    return hcm_pb2.HttpFilter(name=DFP_FILTER, typed_config=pack(config))


def url_clusters() -> list[cluster_pb2.Cluster]:
    out = []
    for scheme in ("http", "https"):
        cluster = cluster_pb2.Cluster(
            name=f"{URL_CLUSTER_PREFIX}{scheme}",
            cluster_type=cluster_pb2.Cluster.CustomClusterType(
                name="envoy.clusters.dynamic_forward_proxy",
                typed_config=pack(dfp_cluster_pb2.ClusterConfig(dns_cache_config=_dns_cache())),
            ),
            lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
            connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        )
        if scheme == "https":
            # SNI and the certificate check follow each request's host.
            options = hpo_pb2.HttpProtocolOptions(
                upstream_http_protocol_options=protocol_pb2.UpstreamHttpProtocolOptions(
                    auto_sni=True, auto_san_validation=True
                ),
                explicit_http_config=hpo_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                    http_protocol_options=protocol_pb2.Http1ProtocolOptions()
                ),
            )
            cluster.typed_extension_protocol_options[HPO_KEY].CopyFrom(pack(options))
            context = tls_pb2.UpstreamTlsContext(
                common_tls_context=tls_pb2.CommonTlsContext(
                    validation_context=common_pb2.CertificateValidationContext(
                        trusted_ca=base_pb2.DataSource(filename=system_ca_file())
                    )
                )
            )
            cluster.transport_socket.CopyFrom(
                base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
            )
        out.append(cluster)
    return out


def url_routes(sidecar: Sidecar, no_ext_proc: Mapping[str, any_pb2.Any]) -> list[rc.Route]:
    out = []
    for scheme in ("http", "https"):
        prefix = f"^/v1\\.0/invoke/{scheme}://([^/]+)/method/"
        action = rc.RouteAction(
            cluster=f"{URL_CLUSTER_PREFIX}{scheme}",
            timeout=seconds(0),
            regex_rewrite=regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex=prefix), substitution="/"
            ),
            host_rewrite_path_regex=regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex=prefix + ".*$"), substitution="\\1"
            ),
        )
        route = rc.Route(
            name=f"invoke-url:{scheme}",
            match=rc.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex=prefix + ".*")),
            route=action,
            request_headers_to_add=[set_header(HEADER_CALLER, sidecar.app_id)],
            request_headers_to_remove=[auth.API_TOKEN_HEADER],
            metadata=metadata(METADATA_NAMESPACE, {APP_ID_FIELD: f"{scheme} URL"}),
        )
        for name, config in no_ext_proc.items():
            route.typed_per_filter_config[name].CopyFrom(config)
        out.append(route)
    return out
