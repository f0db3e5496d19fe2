"""Dapr HTTP middleware as Envoy filters. Pure.

A Configuration's ``httpPipeline`` (calls into this sidecar's Dapr API) becomes filters at
the front of the ``dapr_http`` listener; its ``appHttpPipeline`` (calls from the sidecar to
its app) filters on ``dapr_inbound``, before the router, in the handlers' order:

- ``bearer`` → ``jwt_authn``: the token in ``Authorization: Bearer`` must be signed by a
  key of the JWKS (``jwksURL``, or the ``jwks_uri`` of the issuer's OpenID configuration,
  which the control plane looks up: until it has, no token passes), carry the ``issuer``
  and the ``audience``; else 401. Health checks (``/v1.0/healthz``) stay open.
- ``ratelimit`` → ``local_ratelimit`` with a bucket of ``maxRequestsPerSecond`` refilled
  every second (one bucket per listener: the sidecar's callers share it);
- ``routeralias`` → a Lua filter replacing an aliased path (the query string kept), before
  any route is chosen;
- ``routerchecker`` → RBAC denying (403) a path the ``rule`` does not match;
- ``uppercase`` → a Lua filter upper-casing the request body.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, http_uri_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import path_pb2, regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import any_pb2, wrappers_pb2

from tandem.resources.middleware import (
    Bearer,
    Middleware,
    RateLimit,
    RouterAlias,
    RouterChecker,
)
from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import pack, seconds, socket_address
from tandem.xds.translate.http_endpoints import system_ca_file
from tandem.xds.translate.tls import TLS_TRANSPORT_SOCKET

CLUSTER_PREFIX = "jwks:"
FILTER_PREFIX = "tandem.middleware."
# Until the issuer's JWKS URI is known no token can be checked: every call but a health
# check is refused (Envoy refuses a JWT provider without keys).
_NO_KEYS_YET = """
function envoy_on_request(handle)
  local path = handle:headers():get(":path") or ""
  if string.sub(path, 1, 13) ~= "/v1.0/healthz" then
    handle:respond({[":status"] = "401"}, "the issuer's signing keys are not known yet")
  end
end
"""
_UPPERCASE = """
function envoy_on_request(handle)
  local body = handle:body()
  if body ~= nil and body:length() > 0 then
    body:setBytes(string.upper(body:getBytes(0, body:length())))
  end
end
"""


def _jwks_target(url: str) -> tuple[str, str, int, bool]:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    return f"{CLUSTER_PREFIX}{host}:{port}", host, port, tls


def _jwks_url(sidecar: Sidecar, bearer: Bearer) -> str | None:
    if bearer.jwks_url is not None:
        return bearer.jwks_url
    return dict(sidecar.discovered_jwks).get(bearer.issuer)


def _bearer(name: str, bearer: Bearer, url: str) -> jwt_pb2.JwtAuthentication:
    provider = jwt_pb2.JwtProvider(
        issuer=bearer.issuer,
        audiences=[bearer.audience],
        forward=True,
        remote_jwks=jwt_pb2.RemoteJwks(
            http_uri=http_uri_pb2.HttpUri(
                uri=url, cluster=_jwks_target(url)[0], timeout=seconds(5)
            ),
            cache_duration=seconds(300),
            # Fetched when the listener starts, so the first call does not wait for it.
            async_fetch=jwt_pb2.JwksAsyncFetch(),
        ),
    )
    return jwt_pb2.JwtAuthentication(
        providers={name: provider},
        rules=[
            jwt_pb2.RequirementRule(match=rc.RouteMatch(prefix="/v1.0/healthz")),
            jwt_pb2.RequirementRule(
                match=rc.RouteMatch(prefix="/"),
                requires=jwt_pb2.JwtRequirement(provider_name=name),
            ),
        ],
    )


def _rate_limit(rate: RateLimit) -> local_rate_limit_pb2.LocalRateLimit:
    full = base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(numerator=100)
    )
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="tandem_middleware_ratelimit",
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=rate.per_second,
            tokens_per_fill=wrappers_pb2.UInt32Value(value=rate.per_second),
            fill_interval=seconds(1),
        ),
        filter_enabled=full,
        filter_enforced=full,
    )


def _alias_code(alias: RouterAlias) -> str:
    # The parser allows only printable ASCII without quotes or backslashes in paths.
    table = ",\n".join(f'  ["{source}"] = "{target}"' for source, target in alias.routes)
    return f"""
local aliases = {{
{table}
}}
function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path")
  local query_at = string.find(path, "?", 1, true)
  local bare = query_at and string.sub(path, 1, query_at - 1) or path
  local target = aliases[bare]
  if target ~= nil then
    headers:replace(":path", target .. (query_at and string.sub(path, query_at) or ""))
    pcall(function() handle:clearRouteCache() end)
  end
end
"""


def _router_checker(check: RouterChecker) -> rbac_pb2.RBAC:
    allowed = rbac_config_pb2.Permission(
        url_path=path_pb2.PathMatcher(
            path=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=check.rule))
        )
    )
    return rbac_pb2.RBAC(
        rules=rbac_config_pb2.RBAC(
            action=rbac_config_pb2.RBAC.DENY,
            policies={
                "routerchecker": rbac_config_pb2.Policy(
                    permissions=[rbac_config_pb2.Permission(not_rule=allowed)],
                    principals=[rbac_config_pb2.Principal(any=True)],
                )
            },
        )
    )


def _lua(code: str) -> any_pb2.Any:
    return pack(lua_pb2.Lua(default_source_code=base_pb2.DataSource(inline_string=code)))


def _filter(sidecar: Sidecar, mw: Middleware) -> hcm_pb2.HttpFilter:
    name = FILTER_PREFIX + mw.name
    settings = mw.settings
    if isinstance(settings, Bearer):
        url = _jwks_url(sidecar, settings)
        config = pack(_bearer(mw.name, settings, url)) if url is not None else _lua(_NO_KEYS_YET)
    elif isinstance(settings, RateLimit):
        config = pack(_rate_limit(settings))
    elif isinstance(settings, RouterAlias):
        config = pack(
            lua_pb2.Lua(
                default_source_code=base_pb2.DataSource(inline_string=_alias_code(settings))
            )
        )
    elif isinstance(settings, RouterChecker):
        config = pack(_router_checker(settings))
    else:
        config = pack(
            lua_pb2.Lua(default_source_code=base_pb2.DataSource(inline_string=_UPPERCASE))
        )
    return hcm_pb2.HttpFilter(name=name, typed_config=config)


def api_filters(sidecar: Sidecar) -> list[hcm_pb2.HttpFilter]:
    """``httpPipeline``: first in the chain of the app-facing Dapr HTTP API listener."""
    return [_filter(sidecar, mw) for mw in sidecar.http_middleware]


def app_filters(sidecar: Sidecar) -> list[hcm_pb2.HttpFilter]:
    """``appHttpPipeline``: on the inbound listener, before the router."""
    return [_filter(sidecar, mw) for mw in sidecar.app_middleware]


def clusters(sidecar: Sidecar) -> list[cluster_pb2.Cluster]:
    """One cluster per JWKS host the sidecar's bearer middleware fetches keys from."""
    out: dict[str, cluster_pb2.Cluster] = {}
    for mw in (*sidecar.http_middleware, *sidecar.app_middleware):
        if not isinstance(mw.settings, Bearer):
            continue
        url = _jwks_url(sidecar, mw.settings)
        if url is None:
            continue
        name, host, port, tls = _jwks_target(url)
        cluster = cluster_pb2.Cluster(
            name=name,
            type=cluster_pb2.Cluster.STRICT_DNS,
            dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
            connect_timeout=seconds(5),
            load_assignment=endpoint_pb2.ClusterLoadAssignment(
                cluster_name=name,
                endpoints=[
                    endpoint_components_pb2.LocalityLbEndpoints(
                        lb_endpoints=[
                            endpoint_components_pb2.LbEndpoint(
                                endpoint=endpoint_components_pb2.Endpoint(
                                    address=socket_address(host, port)
                                )
                            )
                        ]
                    )
                ],
            ),
        )
        if tls:
            context = tls_pb2.UpstreamTlsContext(
                sni=host,
                common_tls_context=tls_pb2.CommonTlsContext(
                    validation_context=common_pb2.CertificateValidationContext(
                        trusted_ca=base_pb2.DataSource(filename=system_ca_file())
                    )
                ),
            )
            cluster.transport_socket.CopyFrom(
                base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
            )
        out[name] = cluster
    return [out[name] for name in sorted(out)]


def issuers_to_discover(sidecar: Sidecar) -> tuple[str, ...]:
    """Issuers of bearer middleware without jwksURL whose JWKS URI is not known yet."""
    known = dict(sidecar.discovered_jwks)
    return tuple(
        sorted(
            {
                mw.settings.issuer
                for mw in (*sidecar.http_middleware, *sidecar.app_middleware)
                if isinstance(mw.settings, Bearer)
                and mw.settings.jwks_url is None
                and mw.settings.issuer not in known
            }
        )
    )


__all__ = ["api_filters", "app_filters", "clusters", "issuers_to_discover"]
