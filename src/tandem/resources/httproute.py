"""``kind: HTTPRoute`` (Gateway API, ``gateway.networking.k8s.io/v1``) in its mesh form.

A route attaches to calls to an app id through ``parentRefs: [{group: "", kind: Service,
name: <appId>}]`` (GAMMA) and shapes the calling sidecar's invocations of that id: which
calls it takes (``matches``), where they go (``backendRefs`` with weights, each an app id)
and what happens on the way (filters, ``timeouts``, ``retry``). Translation into Envoy is
``tandem.xds.translate.traffic``. Every field outside what is modelled here is refused by
file, field and reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from ._fields import only
from ._parse import Node
from .common import parse_object_meta

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]
ValueType = Literal["Exact", "RegularExpression"]
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
# Gateway API header names: RFC 7230 tokens.
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")

_MESH_ONLY = "Tandem routes calls between app ids (the mesh form, GAMMA)"


@dataclass(frozen=True, slots=True)
class PathMatch:
    type: PathType = "PathPrefix"
    value: str = "/"


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """A header or query parameter match."""

    name: str
    value: str
    type: ValueType = "Exact"


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path: PathMatch = PathMatch()
    headers: tuple[ValueMatch, ...] = ()
    query_params: tuple[ValueMatch, ...] = ()
    method: str | None = None


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Mirror:
    app_id: str
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class URLRewrite:
    hostname: str | None = None
    full_path: str | None = None  # ReplaceFullPath
    prefix: str | None = None  # ReplacePrefixMatch


@dataclass(frozen=True, slots=True)
class Backend:
    app_id: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Retry:
    codes: tuple[int, ...] = ()
    attempts: int | None = None
    backoff: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    matches: tuple[RouteMatch, ...]
    backends: tuple[Backend, ...] = ()
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    mirrors: tuple[Mirror, ...] = ()
    rewrite: URLRewrite | None = None
    request_timeout: timedelta | None = None  # the whole call, retries included
    backend_timeout: timedelta | None = None  # one attempt
    retry: Retry | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    name: str
    parents: tuple[str, ...]  # app ids
    rules: tuple[Rule, ...]
    namespace: str | None = None
    source: str = field(default="", compare=False)


def _service_ref(node: Node, what: str, *, extra: tuple[str, ...] = ()) -> str:
    """The app id a Service reference names (``group: ""``, ``kind: Service``)."""
    only(node, ("group", "kind", "name", "namespace", "port", *extra))
    group = node.get("group").text()
    if group not in ("", "core"):
        raise node.get("group").error(f'{what} must be in the core group (""): {_MESH_ONLY}')
    kind = node.get("kind").text("Service")
    if kind != "Service":
        raise node.get("kind").error(f"{what} must be a Service (an app id): {_MESH_ONLY}")
    port = node.get("port").optional_integer()
    if port is not None and not 1 <= port <= 65535:
        raise node.get("port").error(f"must be a TCP port (1-65535), got {port}")
    # `port` is accepted and not used: an app id has one inbound port.
    return node.get("name").required_text().strip()


def _parent(node: Node, namespace: str | None) -> str:
    only(
        node,
        ("group", "kind", "name", "namespace", "port"),
        {"sectionName": "an app id has one inbound port; there is no section to attach to"},
    )
    ns = node.get("namespace").optional_text()
    if ns and namespace and ns != namespace:
        raise node.get("namespace").error(
            f"a route in namespace {namespace!r} attaches only to app ids of its own namespace"
        )
    return _service_ref(node, "parentRefs")


def _header_name(node: Node) -> str:
    name = node.required_text()
    if not _HEADER_NAME.match(name):
        raise node.error(f"{name!r} is not a valid HTTP header name")
    return name


def _regex(node: Node) -> str:
    pattern = node.required_text()
    try:
        re.compile(pattern)
    except re.error as exc:
        raise node.error(f"invalid regular expression: {exc}") from None
    return pattern


def _value_match(node: Node, *, header: bool) -> ValueMatch:
    only(node, ("type", "name", "value"))
    kind = node.get("type").choice(("Exact", "RegularExpression"), "Exact")
    name = _header_name(node.get("name")) if header else node.get("name").required_text()
    value_node = node.get("value")
    value = _regex(value_node) if kind == "RegularExpression" else value_node.required_text()
    return ValueMatch(
        name=name, value=value, type="Exact" if kind == "Exact" else "RegularExpression"
    )


def _path(node: Node) -> PathMatch:
    if not node.present:
        return PathMatch()
    only(node, ("type", "value"))
    kind = node.get("type").choice(("Exact", "PathPrefix", "RegularExpression"), "PathPrefix")
    value_node = node.get("value")
    if kind == "RegularExpression":
        return PathMatch("RegularExpression", _regex(value_node))
    value = value_node.text("/")
    if not value.startswith("/"):
        raise value_node.error(f"{value!r} must start with '/'")
    return PathMatch("Exact" if kind == "Exact" else "PathPrefix", value)


def _match(node: Node) -> RouteMatch:
    only(node, ("path", "headers", "queryParams", "method"))
    method_node = node.get("method")
    method = method_node.optional_text()
    if method is not None and method not in METHODS:
        raise method_node.error(f"must be one of {', '.join(METHODS)}, got {method!r}")
    return RouteMatch(
        path=_path(node.get("path")),
        headers=tuple(_value_match(n, header=True) for n in node.get("headers").items()),
        query_params=tuple(_value_match(n, header=False) for n in node.get("queryParams").items()),
        method=method,
    )


def _pairs(node: Node) -> tuple[tuple[str, str], ...]:
    out = []
    for item in node.items():
        only(item, ("name", "value"))
        out.append((_header_name(item.get("name")), item.get("value").text()))
    return tuple(out)


def _header_modifier(node: Node) -> HeaderModifier:
    only(node, ("set", "add", "remove"))
    return HeaderModifier(
        set=_pairs(node.get("set")),
        add=_pairs(node.get("add")),
        remove=tuple(_header_name(n) for n in node.get("remove").items()),
    )


def _mirror(node: Node) -> Mirror:
    only(node, ("backendRef", "percent", "fraction"))
    app_id = _service_ref(node.get("backendRef").require_present(), "requestMirror.backendRef")
    percent_node, fraction = node.get("percent"), node.get("fraction")
    if percent_node.present and fraction.present:
        raise fraction.error("set either percent or fraction, not both")
    percent = 100.0
    if percent_node.present:
        percent = float(percent_node.integer(100, minimum=0))
        if percent > 100:
            raise percent_node.error(f"must be at most 100, got {percent:.0f}")
    elif fraction.present:
        only(fraction, ("numerator", "denominator"))
        numerator = fraction.get("numerator").require_present().integer(0, minimum=0)
        denominator = fraction.get("denominator").integer(100, minimum=1)
        if numerator > denominator:
            raise fraction.get("numerator").error("must not exceed the denominator")
        percent = 100.0 * numerator / denominator
    return Mirror(app_id=app_id, percent=percent)


def _rewrite(node: Node, matches: tuple[RouteMatch, ...]) -> URLRewrite:
    only(node, ("hostname", "path"))
    path = node.get("path")
    only(path, ("type", "replaceFullPath", "replacePrefixMatch"))
    full = prefix = None
    if path.present:
        kind = (
            path.get("type").require_present().choice(("ReplaceFullPath", "ReplacePrefixMatch"), "")
        )
        if kind == "ReplaceFullPath":
            full = path.get("replaceFullPath").required_text()
        else:
            prefix = path.get("replacePrefixMatch").required_text()
            if any(m.path.type != "PathPrefix" for m in matches):
                raise path.get("type").error(
                    "ReplacePrefixMatch needs every match of the rule to be a PathPrefix"
                )
        value = full if full is not None else prefix
        assert value is not None
        if not value.startswith("/"):
            raise path.error(f"{value!r} must start with '/'")
    return URLRewrite(hostname=node.get("hostname").optional_text(), full_path=full, prefix=prefix)


_REFUSED_FILTERS = {
    "RequestRedirect": "a redirect answers the caller itself; invocation has no redirects",
    "ExtensionRef": "Tandem has no filter extensions",
    "CORS": "calls between app ids are not browser requests",
    "ExternalAuth": "use accessControl or a bearer middleware",
}
_FILTER_KEYS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "URLRewrite": "urlRewrite",
}


def _retry(node: Node) -> Retry:
    only(node, ("codes", "attempts", "backoff"))
    codes = []
    for item in node.get("codes").items():
        code = item.integer(0)
        if not 400 <= code <= 599:
            raise item.error(f"must be an HTTP error status (400-599), got {code}")
        codes.append(code)
    return Retry(
        codes=tuple(codes),
        attempts=node.get("attempts").optional_integer(),
        backoff=node.get("backoff").optional_duration(),
    )


def _rule(node: Node) -> Rule:
    only(
        node,
        ("name", "matches", "filters", "backendRefs", "timeouts", "retry"),
        {"sessionPersistence": "use a BackendTrafficPolicy loadBalancer of type ConsistentHash"},
    )
    matches = tuple(_match(n) for n in node.get("matches").items()) or (RouteMatch(),)
    backends = []
    for ref in node.get("backendRefs").items():
        weight_node = ref.get("weight")
        weight = weight_node.integer(1, minimum=0)
        if weight > 1_000_000:
            raise weight_node.error(f"must be at most 1000000, got {weight}")
        if ref.get("filters").present:
            raise ref.get("filters").error(
                "not supported by Tandem: put filters on the rule, not on one backendRef"
            )
        backends.append(
            Backend(_service_ref(ref, "backendRefs", extra=("weight", "filters")), weight)
        )
    request_headers = response_headers = rewrite = None
    mirrors = []
    for item in node.get("filters").items():
        kind_node = item.get("type")
        kind = kind_node.required_text()
        if kind in _REFUSED_FILTERS:
            raise kind_node.error(
                f"filter {kind} not supported by Tandem: {_REFUSED_FILTERS[kind]}"
            )
        if kind not in _FILTER_KEYS:
            raise kind_node.error(
                f"unknown filter type {kind!r} (known: {', '.join(_FILTER_KEYS)})"
            )
        key = _FILTER_KEYS[kind]
        only(item, ("type", key))
        body = item.get(key).require_present()
        if kind == "RequestMirror":
            mirrors.append(_mirror(body))
            continue
        already: object = {
            "URLRewrite": rewrite,
            "RequestHeaderModifier": request_headers,
            "ResponseHeaderModifier": response_headers,
        }[kind]
        if already is not None:
            raise kind_node.error(f"filter {kind} may appear once per rule")
        if kind == "RequestHeaderModifier":
            request_headers = _header_modifier(body)
        elif kind == "ResponseHeaderModifier":
            response_headers = _header_modifier(body)
        else:
            rewrite = _rewrite(body, matches)
    timeouts = node.get("timeouts")
    only(timeouts, ("request", "backendRequest"))
    retry = node.get("retry")
    return Rule(
        name=node.get("name").optional_text(),
        matches=matches,
        backends=tuple(backends),
        request_headers=request_headers,
        response_headers=response_headers,
        mirrors=tuple(mirrors),
        rewrite=rewrite,
        request_timeout=timeouts.get("request").optional_duration(),
        backend_timeout=timeouts.get("backendRequest").optional_duration(),
        retry=_retry(retry) if retry.present else None,
    )


def parse_http_route(doc: Node) -> HTTPRoute:
    only(doc, ("apiVersion", "kind", "metadata", "spec", "status"))
    meta = parse_object_meta(doc)
    spec = doc.get("spec").require_present()
    only(
        spec,
        ("parentRefs", "rules"),
        {"hostnames": "calls are addressed by app id, not by host name"},
    )
    parents = tuple(_parent(n, meta.namespace) for n in spec.get("parentRefs").items())
    if not parents:
        raise spec.get("parentRefs").error(
            "is required: name the app id the route applies to "
            '(parentRefs: [{group: "", kind: Service, name: <appId>}])'
        )
    rules = tuple(_rule(n) for n in spec.get("rules").items())
    if not rules:
        raise spec.get("rules").error("is required: at least one rule")
    return HTTPRoute(
        name=meta.name, namespace=meta.namespace, parents=parents, rules=rules, source=doc.file
    )
