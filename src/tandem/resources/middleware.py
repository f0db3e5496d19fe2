"""Dapr HTTP middleware (``middleware.http.*`` components named by a Configuration's
``httpPipeline`` / ``appHttpPipeline``), resolved into what Envoy runs.

Tandem compiles the middleware that has an Envoy equivalent into filters
(``tandem.xds.translate.middleware``): ``bearer`` (JWT authentication), ``ratelimit``
(local rate limit), ``routeralias`` (path aliases), ``routerchecker`` (a path regex) and
``uppercase`` (Lua). Any other middleware type, an unknown metadata field or a handler
naming no such component is refused with the file, the field and the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .component import Component
from .configuration import SUPPORTED_MIDDLEWARE as SUPPORTED
from .configuration import Configuration, PipelineHandler
from .errors import ResourceError

# Fields each middleware reads (lower case: Dapr matches metadata names case-insensitively).
_FIELDS = {
    "middleware.http.bearer": ("issuer", "audience", "jwksurl"),
    "middleware.http.ratelimit": ("maxrequestspersecond",),
    "middleware.http.routeralias": ("routes",),
    "middleware.http.routerchecker": ("rule",),
    "middleware.http.uppercase": (),
}
# Alias paths end up in a Lua string literal: printable ASCII without quotes or backslashes.
_ALIAS = re.compile(r"^/[\x21-\x7e]*$")


@dataclass(frozen=True, slots=True)
class Bearer:
    issuer: str
    audience: str
    jwks_url: str | None = None  # None: the issuer's OpenID configuration names it


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: int


@dataclass(frozen=True, slots=True)
class RouterAlias:
    routes: tuple[tuple[str, str], ...]  # alias path → the path it stands for


@dataclass(frozen=True, slots=True)
class RouterChecker:
    rule: str  # a regular expression every request path must match


@dataclass(frozen=True, slots=True)
class Uppercase:
    pass


Settings = Bearer | RateLimit | RouterAlias | RouterChecker | Uppercase


@dataclass(frozen=True, slots=True)
class Middleware:
    name: str  # the component's name
    settings: Settings


def _error(component: Component, field: str, reason: str) -> ResourceError:
    return ResourceError(component.source or component.name, field, reason)


def _values(component: Component) -> dict[str, str]:
    allowed = _FIELDS[component.type]
    out = {}
    for index, item in enumerate(component.metadata):
        field = f"spec.metadata[{index}]"
        key = item.name.lower()
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise _error(
                component,
                f"{field}.name",
                f"{item.name!r} is not a field of {component.type} in Tandem (known: {known})",
            )
        if item.value is None:
            raise _error(
                component,
                f"{field}.secretKeyRef",
                "middleware settings are compiled into Envoy by the control plane: "
                "give the value inline",
            )
        out[key] = item.value
    return out


def _settings(component: Component) -> Settings:
    values = _values(component)

    def required(key: str) -> str:
        value = values.get(key, "").strip()
        if not value:
            raise _error(component, "spec.metadata", f"{key} is required for {component.type}")
        return value

    match component.type:
        case "middleware.http.bearer":
            jwks = values.get("jwksurl", "").strip() or None
            issuer = required("issuer")
            for key, url in (("issuer", issuer), ("jwksURL", jwks)):
                if url is not None and not re.match(r"^https?://[^/\s]+", url):
                    raise _error(
                        component, "spec.metadata", f"{key} {url!r} must be an http(s) URL"
                    )
            return Bearer(issuer=issuer, audience=required("audience"), jwks_url=jwks)
        case "middleware.http.ratelimit":
            text = required("maxrequestspersecond")
            try:
                rate = int(text)
            except ValueError:
                rate = 0
            if rate < 1:
                raise _error(
                    component,
                    "spec.metadata",
                    f"maxRequestsPerSecond must be a whole number of at least 1, got {text!r}",
                )
            return RateLimit(per_second=rate)
        case "middleware.http.routeralias":
            try:
                routes = json.loads(required("routes"))
            except json.JSONDecodeError as exc:
                raise _error(component, "spec.metadata", f"routes is not JSON: {exc}") from None
            if not isinstance(routes, dict) or not all(
                isinstance(k, str)
                and isinstance(v, str)
                and _ALIAS.match(k)
                and _ALIAS.match(v)
                and '"' not in k + v
                and "\\" not in k + v
                for k, v in routes.items()
            ):
                raise _error(
                    component,
                    "spec.metadata",
                    'routes must map alias paths to paths, e.g. {"/a": "/v1.0/invoke/b/method/a"}',
                )
            return RouterAlias(routes=tuple(sorted(routes.items())))
        case "middleware.http.routerchecker":
            rule = required("rule")
            try:
                re.compile(rule)
            except re.error as exc:
                raise _error(
                    component, "spec.metadata", f"rule is not a regular expression: {exc}"
                ) from None
            return RouterChecker(rule=rule)
        case _:
            return Uppercase()


def resolve_pipeline(
    handlers: Sequence[PipelineHandler],
    components: Sequence[Component],
    *,
    source: str,
    field: str,
) -> tuple[Middleware, ...]:
    """The middleware of one pipeline (``field`` of the Configuration in ``source``), in
    order; ``components`` are the app's middleware components."""
    out = []
    for index, handler in enumerate(handlers):
        where = f"{field}.handlers[{index}]"
        if handler.type not in SUPPORTED:
            raise ResourceError(
                source,
                f"{where}.type",
                f"{handler.type} is not supported by Tandem (supported: {', '.join(SUPPORTED)})",
            )
        component = next((c for c in components if c.name == handler.name), None)
        if component is None:
            raise ResourceError(
                source, f"{where}.name", f"no middleware component named {handler.name!r}"
            )
        if component.type != handler.type:
            raise ResourceError(
                source,
                f"{where}.type",
                f"component {handler.name!r} is a {component.type}, not a {handler.type}",
            )
        out.append(Middleware(name=component.name, settings=_settings(component)))
    return tuple(out)


def check_pipelines(config: Configuration, files: Sequence[tuple[str, str]]) -> None:
    """Resolve both pipelines of ``config`` against the middleware components of ``files``
    ((file, YAML) pairs), raising ResourceError as the control plane would."""
    from .loader import parse_text

    components = [
        r for file, text in files for r in parse_text(text, file) if isinstance(r, Component)
    ]
    source = config.source or config.name
    resolve_pipeline(config.http_pipeline, components, source=source, field="spec.httpPipeline")
    resolve_pipeline(
        config.app_http_pipeline, components, source=source, field="spec.appHttpPipeline"
    )
