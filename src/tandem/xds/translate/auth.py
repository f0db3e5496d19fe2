"""API tokens, enforced by Envoy so invocations (which never enter the runtime) are covered.

``DAPR_API_TOKEN`` (app → sidecar): with a token set, every request on ``dapr_http`` and
``dapr_grpc`` must carry ``dapr-api-token: <token>`` (HTTP header or gRPC metadata), except
the health endpoints ``/v1.0/healthz`` and ``/v1.0/healthz/outbound``. The check is a route
placed before every other one, matching a missing or different token; it answers 401
``invalid api token`` (plain text, as daprd does; gRPC callers get UNAUTHENTICATED).
The header never travels on: invocation routes remove it whether or not a token is set.

``APP_API_TOKEN`` (sidecar → app): the inbound listener sets ``dapr-api-token`` to it on
every invocation it forwards to the app, replacing whatever arrived; without one it
removes the header, so an app never sees a caller's token. (The runtime adds the same
header to the calls it makes to the app itself.)
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import string_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import set_header

API_TOKEN_HEADER = "dapr-api-token"
HEALTH_PATHS = ("/v1.0/healthz", "/v1.0/healthz/outbound")
INVALID_TOKEN = "invalid api token"


def rejects_bad_token(token: str) -> rc.RouteMatch:
    """Any request whose ``dapr-api-token`` is missing or differs from ``token``."""
    return rc.RouteMatch(
        prefix="/",
        headers=[
            rc.HeaderMatcher(
                name=API_TOKEN_HEADER,
                string_match=string_pb2.StringMatcher(exact=token),
                invert_match=True,
                treat_missing_header_as_empty=True,
            )
        ],
    )


def unauthorized_route() -> tuple[str, rc.DirectResponseAction]:
    return "api-token-invalid", rc.DirectResponseAction(
        status=401, body=base_pb2.DataSource(inline_string=INVALID_TOKEN)
    )


def health_matches() -> list[rc.RouteMatch]:
    return [rc.RouteMatch(path=path) for path in HEALTH_PATHS]


def inbound_token_headers(
    sidecar: Sidecar,
) -> tuple[list[base_pb2.HeaderValueOption], list[str]]:
    """(headers to set, headers to remove) on requests the inbound listener forwards."""
    if sidecar.app_api_token is not None:
        return [set_header(API_TOKEN_HEADER, sidecar.app_api_token)], []
    return [], [API_TOKEN_HEADER]
