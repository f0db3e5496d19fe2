"""Dapr's API logging as Envoy access logs on the app-facing API listeners.

One JSON line per API call, in the file the sidecar names (``$TANDEM_HOME/logs/<app>.api.log``),
with Dapr's field names: ``msg`` ("HTTP API Called" / "gRPC API Called"), ``method``
(``GET /v1.0/state/s/k``, or the gRPC method), ``useragent``, ``code``, ``size``,
``duration`` (ms), ``time``, ``app_id``. ``omitHealthChecks`` drops ``/v1.0/healthz*``.

``obfuscateURLs`` logs the route template instead of the path (``GET
/v1.0/state/{storeName}/{key}``). Envoy's formatters cannot rewrite a path, so a small Lua
filter, present only then, matches the path against Dapr's route templates and leaves the
template in dynamic metadata for the log line.
"""

from __future__ import annotations

import re

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import substitution_format_string_pb2 as sfs_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from tandem.xds.ir import Sidecar
from tandem.xds.translate._protos import pack

FILE_LOGGER = "envoy.access_loggers.file"
LUA_FILTER = "envoy.filters.http.lua"
METADATA_NAMESPACE = "tandem.api_logging"
HEALTH_PREFIX = "/v1.0/healthz"

# Dapr's HTTP API route templates, most specific first. `{name}` is one path segment,
# `{name...}` the rest of the path. The version segment matches any v1 version.
ROUTE_TEMPLATES = (
    "/v1.0/healthz/outbound",
    "/v1.0/healthz",
    "/v1.0/metadata/{key}",
    "/v1.0/metadata",
    "/v1.0/shutdown",
    "/v1.0/state/{storeName}/bulk",
    "/v1.0/state/{storeName}/transaction",
    "/v1.0-alpha1/state/{storeName}/query",
    "/v1.0/state/{storeName}/{key}",
    "/v1.0/state/{storeName}",
    "/v1.0-alpha1/publish/bulk/{pubsubName}/{topic...}",
    "/v1.0/publish/{pubsubName}/{topic...}",
    "/v1.0/invoke/{appId}/method/{method...}",
    "/v1.0/bindings/{name}",
    "/v1.0/secrets/{secretStoreName}/bulk",
    "/v1.0/secrets/{secretStoreName}/{key}",
    "/v1.0/actors/{actorType}/{actorId}/method/{method...}",
    "/v1.0/actors/{actorType}/{actorId}/state/{key}",
    "/v1.0/actors/{actorType}/{actorId}/state",
    "/v1.0/actors/{actorType}/{actorId}/reminders/{name}",
    "/v1.0/actors/{actorType}/{actorId}/timers/{name}",
    "/v1.0/configuration/{storeName}/subscribe",
    "/v1.0/configuration/{storeName}/{subscribeId}/unsubscribe",
    "/v1.0/configuration/{storeName}",
    "/v1.0-alpha1/lock/{storeName}",
    "/v1.0-alpha1/unlock/{storeName}",
    "/v1.0-beta1/workflows/{workflowComponent}/{workflowName}/start",
    "/v1.0-beta1/workflows/{workflowComponent}/{instanceId}/raiseEvent/{eventName}",
    "/v1.0-beta1/workflows/{workflowComponent}/{instanceId}/{operation}",
    "/v1.0-beta1/workflows/{workflowComponent}/{instanceId}",
    "/v1.0-alpha1/crypto/{name}/{operation}",
    "/v1.0-alpha1/jobs/{name}",
    "/v1.0-alpha2/conversation/{name}/converse",
)
# The header form of invocation (`dapr-app-id: X` on any path) logs as the invoke route.
_INVOKE_TEMPLATE = "/v1.0/invoke/{appId}/method/{method...}"


def _lua_pattern(template: str) -> str:
    """A template as an anchored Lua pattern (Lua patterns escape with %)."""
    parts = []
    for i, seg in enumerate(template.strip("/").split("/")):
        if i == 0:
            parts.append("v1[^/]*")
        elif seg.endswith("...}"):
            parts.append(".+")
        elif seg.startswith("{"):
            parts.append("[^/]+")
        else:
            parts.append(re.sub(r"([^\w])", r"%\1", seg))
    return "^/" + "/".join(parts) + "$"


def _lua_code() -> str:
    table = ",\n".join(f'  {{"{_lua_pattern(t)}", "{t}"}}' for t in ROUTE_TEMPLATES)
    return f"""local routes = {{
{table}
}}

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = string.gsub(headers:get(":path") or "", "%?.*$", "")
  local name = nil
  if headers:get("dapr-app-id") ~= nil then
    name = "{_INVOKE_TEMPLATE}"
  else
    for _, route in ipairs(routes) do
      if string.find(path, route[1]) then
        name = route[2]
        break
      end
    end
  end
  if name == nil then
    -- Not a Dapr route: keep the version and API name only.
    name = (string.match(path, "^/[^/]*/[^/]*") or "/") .. "/..."
  end
  handle:streamInfo():dynamicMetadata():set("{METADATA_NAMESPACE}", "route", name)
end
"""


def obfuscation_filters(sidecar: Sidecar) -> list[hcm_pb2.HttpFilter]:
    """The Lua filter that names the route template (first in the HTTP API chain), if asked."""
    logging = sidecar.api_logging
    if logging is None or not logging.obfuscate_urls:
        return []
    lua = lua_pb2.Lua(default_source_code={"inline_string": _lua_code()})
    return [hcm_pb2.HttpFilter(name=LUA_FILTER, typed_config=pack(lua))]


def _format(sidecar: Sidecar, *, grpc: bool) -> sfs_pb2.SubstitutionFormatString:
    logging = sidecar.api_logging
    assert logging is not None
    if grpc:
        method = "%PATH(NQ)%"
    elif logging.obfuscate_urls:
        method = f"%REQ(:METHOD)% %DYNAMIC_METADATA({METADATA_NAMESPACE}:route)%"
    else:
        method = "%REQ(:METHOD)% %PATH(NQ)%"
    fields = struct_pb2.Struct()
    fields.update(
        {
            "time": "%START_TIME%",
            "level": "info",
            "type": "log",
            "scope": "dapr.runtime.grpc-api" if grpc else "dapr.runtime.http-info",
            "msg": "gRPC API Called" if grpc else "HTTP API Called",
            "app_id": sidecar.app_id,
            "method": method,
            "useragent": "%REQ(USER-AGENT)%",
            "code": "%GRPC_STATUS_NUMBER%" if grpc else "%RESPONSE_CODE%",
            "size": "%BYTES_SENT%",
            "duration": "%DURATION%",
        }
    )
    return sfs_pb2.SubstitutionFormatString(json_format=fields, omit_empty_values=True)


def _not_health_check() -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(
        header_filter=accesslog_pb2.HeaderFilter(
            header=rc.HeaderMatcher(
                name=":path",
                string_match=string_pb2.StringMatcher(prefix=HEALTH_PREFIX),
                invert_match=True,
            )
        )
    )


def access_logs(sidecar: Sidecar, *, grpc: bool) -> list[accesslog_pb2.AccessLog]:
    """The access log of one app-facing API listener (none when API logging is off)."""
    logging = sidecar.api_logging
    if logging is None:
        return []
    log = accesslog_pb2.AccessLog(
        name=FILE_LOGGER,
        typed_config=pack(
            file_pb2.FileAccessLog(path=logging.path, log_format=_format(sidecar, grpc=grpc))
        ),
    )
    if logging.omit_health_checks and not grpc:
        log.filter.CopyFrom(_not_health_check())
    return [log]
