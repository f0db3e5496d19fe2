"""The control plane's model of the mesh: plain data, independent of Envoy protos.

A :class:`Sidecar` is what one Envoy told us about itself in its node metadata (the table in
``docs/design/sidecar-contract.md``); a :class:`Mesh` is every sidecar whose ADS stream is
live. Translation (``tandem.xds.translate``) is a pure function of the two.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tandem.observability.export import TraceExport, TraceExportError
from tandem.resources import AccessControl, HTTPEndpoint, Resiliency, ResourceError
from tandem.resources._parse import Node
from tandem.resources.access_control import parse_access_control
from tandem.resources.component import Component
from tandem.resources.configuration import ApiRule, PipelineHandler
from tandem.resources.httproute import HTTPRoute
from tandem.resources.loader import applies, parse_text
from tandem.resources.middleware import Middleware, resolve_pipeline
from tandem.resources.traffic_policy import BackendTrafficPolicy

DEFAULT_NAMESPACE = "default"
DEFAULT_TRUST_DOMAIN = "public"
# Dapr's DefaultMaxRequestBodySize (4 << 20).
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_INTERNAL_ADDRESS = "127.0.0.1"

# Dapr's --app-protocol values: https and grpcs are TLS to the app (its certificate is not
# verified, as Dapr does not), h2c is HTTP/2 without TLS.
AppProtocol = Literal["http", "grpc", "https", "grpcs", "h2c"]
APP_PROTOCOLS: tuple[AppProtocol, ...] = ("http", "grpc", "https", "grpcs", "h2c")
# How the Dapr HTTP API reaches the runtime: Envoy proxies HTTP/1.1 to it (cluster
# `tandem_runtime_http`), or asks it over ext_proc. A sidecar that does not say is ext_proc:
# only a bootstrap that names `tandem_runtime_http` can use `http`.
ApiTransport = Literal["http", "ext_proc"]
API_TRANSPORTS: tuple[ApiTransport, ...] = ("http", "ext_proc")
DEFAULT_API_TRANSPORT: ApiTransport = "ext_proc"

# App ids end up in cluster names, RE2 patterns and header values. Dapr forbids dots in app
# ids (a dot separates the namespace in `id.namespace`), and we refuse anything that would
# need escaping in a URL path segment.
_APP_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# A SPIFFE trust domain: lower-case letters, digits, '.', '-' and '_'.
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
# API tokens travel in a header value and a route matcher: printable ASCII, no spaces.
_TOKEN = re.compile(r"^[\x21-\x7e]{1,4096}$")


@dataclass(frozen=True, slots=True)
class ApiLogging:
    """Access logs of the app-facing API listeners (Dapr's API logging), one JSON line per call."""

    path: str
    omit_health_checks: bool = False
    obfuscate_urls: bool = False


@dataclass(frozen=True, slots=True)
class ApiAccess:
    """The Configuration's spec.api lists (complete rules only: see ApiRule.complete)."""

    allowed: tuple[ApiRule, ...] = ()
    denied: tuple[ApiRule, ...] = ()

    def to_metadata(self) -> dict[str, Any]:
        def rules(items: tuple[ApiRule, ...]) -> list[dict[str, str]]:
            return [{"name": r.name, "version": r.version, "protocol": r.protocol} for r in items]

        return {"allowed": rules(self.allowed), "denied": rules(self.denied)}


@dataclass(frozen=True, slots=True)
class AppHealthCheck:
    """App health checks: the runtime probes the app and serves its verdict on ``socket``."""

    socket: str
    interval_ms: int


class SidecarMetadataError(ValueError):
    """The node metadata on an ADS stream does not follow the sidecar contract."""


@dataclass(frozen=True, slots=True)
class Sidecar:
    """One live sidecar (one Envoy), as announced in its node metadata."""

    node_id: str
    app_id: str
    http_port: int
    grpc_port: int
    internal_port: int
    namespace: str = DEFAULT_NAMESPACE
    app_port: int | None = None
    app_protocol: AppProtocol = "http"
    api_transport: ApiTransport = DEFAULT_API_TRANSPORT
    internal_address: str = DEFAULT_INTERNAL_ADDRESS
    metrics_port: int | None = None
    admin_socket: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    pid: int | None = None
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    # Where this sidecar's Envoy reads its private key (the key never leaves the sidecar).
    key_path: str | None = None
    # The callee's own spec.accessControl, compiled to RBAC on its inbound listener.
    access_control: AccessControl | None = None
    # DAPR_API_TOKEN / APP_API_TOKEN of this sidecar: secrets, kept out of repr and logs.
    api_token: str | None = field(default=None, repr=False)
    app_api_token: str | None = field(default=None, repr=False)
    # App-facing `tandem run` flags (docs in README "App-facing flags").
    app_max_concurrency: int | None = None
    # The listener through which the runtime reaches its app (a Unix socket path).
    app_channel_socket: str | None = None
    unix_domain_socket: str | None = None  # --unix-domain-socket DIR
    # Listener `actor_forward` (translate/actors.py): the runtime's way to actor owners.
    actor_forward_socket: str | None = None
    api_logging: ApiLogging | None = None
    app_health: AppHealthCheck | None = None
    # The caller's Resiliency and HTTPEndpoint documents, (file, YAML text): parsed here with
    # the runtime's parser. `targets.apps` shapes this sidecar's outbound invocations
    # (translate/resiliency.py); HTTP endpoints get routes (translate/http_endpoints.py).
    resource_files: tuple[tuple[str, str], ...] = ()
    # Where those come from (--resources-path): the control plane watches them (hot reload).
    resources_paths: tuple[str, ...] = ()
    # The app's --config: its accessControl is watched too (hot reload).
    config_path: str | None = None
    # A pod's dapr.io/config: the name of its namespace's Configuration, which the control
    # plane applies from the cluster (tandem.k8s.configurations).
    configuration: str | None = None
    resiliencies: tuple[Resiliency, ...] = field(default=(), compare=False, hash=False)
    http_endpoints: tuple[HTTPEndpoint, ...] = field(default=(), compare=False, hash=False)
    # Whether NAMESPACE was set for this sidecar: unset, Dapr's self-hosted rule loads every
    # namespace's resources (as the runtime does), though the identity says "default".
    namespace_set: bool = True
    # The caller's traffic kinds, from the same documents (translate/traffic.py).
    http_routes: tuple[HTTPRoute, ...] = field(default=(), compare=False, hash=False)
    traffic_policies: tuple[BackendTrafficPolicy, ...] = field(
        default=(), compare=False, hash=False
    )
    middleware_components: tuple[Component, ...] = field(default=(), compare=False, hash=False)
    # The Configuration's httpPipeline / appHttpPipeline (node metadata "pipelines"), and
    # the middleware they resolve to with this sidecar's components (translate/middleware.py).
    http_pipeline: tuple[PipelineHandler, ...] = ()
    app_http_pipeline: tuple[PipelineHandler, ...] = ()
    http_middleware: tuple[Middleware, ...] = ()
    app_middleware: tuple[Middleware, ...] = ()
    # JWKS URIs the control plane found in issuers' OpenID configurations (bearer without
    # jwksURL): issuer -> jwks_uri. Filled after admission (xds/oidc.py).
    discovered_jwks: tuple[tuple[str, str], ...] = ()
    # Mesh-wide traffic documents ($TANDEM_HOME/resources/, read by the control plane):
    # they follow this sidecar's own (first in file order wins among equals).
    mesh_files: tuple[tuple[str, str], ...] = ()
    # HTTPEndpoint secretKeyRef values `tandem run` resolved: (endpoint, field, value), with
    # field ``header:<name>`` or ``clientTLS.<doc>``. Secrets: kept out of repr and logs.
    endpoint_secrets: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)

    # The Configuration's spec.tracing: Envoy's tracer and its collector cluster.
    tracing: TraceExport | None = None
    # Where the runtime serves GET /metrics (its Dapr metrics and Envoy's stats).
    runtime_metrics_socket: str | None = None
    api_access: ApiAccess | None = None
    # `tandem run --runtime-workers N`: the stateless API paths spread over N runtime
    # processes, the rest stays with worker 0 (translate/workers.py).
    runtime_workers: int = 1

    @property
    def resource_namespace(self) -> str | None:
        """The namespace resources must be in to apply (None: any)."""
        return self.namespace if self.namespace_set else None

    def with_resource_files(self, files: tuple[tuple[str, str], ...]) -> Sidecar:
        """This sidecar with new Resiliency/HTTPEndpoint documents (hot reload); raises
        ResourceError naming file, field and reason if any does not parse."""
        resources: list[_Invocation] = []
        for file, text in files:
            resources += _for_app(parse_text(text, file), self.app_id, self.resource_namespace)
        for file, text in self.mesh_files:
            resources += [
                r
                for r in _for_app(parse_text(text, file), self.app_id, self.resource_namespace)
                if isinstance(r, HTTPRoute | BackendTrafficPolicy)
            ]
        updated = dataclasses.replace(self, resource_files=files, **_by_kind(resources))
        return updated.with_pipelines(self.http_pipeline, self.app_http_pipeline)

    def with_mesh_files(self, files: tuple[tuple[str, str], ...]) -> Sidecar:
        """This sidecar under new mesh-wide traffic documents; raises ResourceError."""
        return dataclasses.replace(self, mesh_files=files).with_resource_files(self.resource_files)

    def with_pipelines(
        self, http: tuple[PipelineHandler, ...], app: tuple[PipelineHandler, ...]
    ) -> Sidecar:
        """This sidecar with (new) pipelines, resolved against its middleware components;
        raises ResourceError naming file, field and reason."""
        source = self.config_path or (
            configuration_source(self.namespace, self.configuration)
            if self.configuration
            else "node metadata"
        )
        components = self.middleware_components
        return dataclasses.replace(
            self,
            http_pipeline=http,
            app_http_pipeline=app,
            http_middleware=resolve_pipeline(
                http, components, source=source, field="spec.httpPipeline"
            ),
            app_middleware=resolve_pipeline(
                app, components, source=source, field="spec.appHttpPipeline"
            ),
        )

    def with_configuration_metadata(self, metadata: Mapping[str, Any], source: str) -> Sidecar:
        """This sidecar under a Configuration's node metadata (access control, tracing, API
        lists, pipelines; tandem.xds.configuration_metadata), absent keys clearing theirs;
        raises ResourceError naming ``source``."""
        problems: list[str] = []
        reader = _Reader(metadata, problems)
        access_control = reader.access_control("access_control")
        tracing = reader.tracing("tracing")
        api_access = reader.api_access("api_access")
        pipelines = reader.pipelines("pipelines")
        if problems:
            raise ResourceError(source, "", "; ".join(problems))
        updated = dataclasses.replace(
            self, access_control=access_control, tracing=tracing, api_access=api_access
        )
        return updated.with_pipelines(*pipelines)

    def endpoint_secret(self, endpoint: str, name: str) -> str | None:
        return next((v for e, f, v in self.endpoint_secrets if e == endpoint and f == name), None)

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/{self.app_id}"

    @property
    def app_speaks_grpc(self) -> bool:
        return self.app_protocol in ("grpc", "grpcs")

    @property
    def app_uses_tls(self) -> bool:
        return self.app_protocol in ("https", "grpcs")

    @property
    def app_uses_http2(self) -> bool:
        return self.app_protocol in ("grpc", "grpcs", "h2c")

    @classmethod
    def from_node_metadata(cls, node_id: str, metadata: Mapping[str, Any]) -> Sidecar:
        """Validate the node metadata Struct (as a plain dict) and build a Sidecar.

        Numbers arrive as floats (a protobuf Struct has only doubles), so integral floats are
        accepted wherever the contract says "number". Every problem is reported at once.
        """
        problems: list[str] = []
        reader = _Reader(metadata, problems)
        if not node_id:
            problems.append("node.id is empty")
        app_id = reader.string("app_id", required=True)
        if app_id and not _APP_ID.match(app_id):
            problems.append(
                f"app_id {app_id!r} must be 1-64 letters, digits, '-' or '_' "
                "and start and end with a letter or digit"
            )
        given_namespace = reader.string("namespace")
        namespace_set = bool(given_namespace)
        namespace = given_namespace or DEFAULT_NAMESPACE
        if not _NAMESPACE.match(namespace):
            problems.append(f"namespace {namespace!r} is not a DNS label")
        protocol = reader.string("app_protocol") or "http"
        if protocol not in APP_PROTOCOLS:
            problems.append(f"app_protocol {protocol!r} must be one of {', '.join(APP_PROTOCOLS)}")
        transport = reader.string("api_transport") or DEFAULT_API_TRANSPORT
        if transport not in API_TRANSPORTS:
            problems.append(
                f"api_transport {transport!r} must be one of {', '.join(API_TRANSPORTS)}"
            )
        internal_address = reader.string("internal_address") or DEFAULT_INTERNAL_ADDRESS
        # EDS endpoints must be IP literals: Envoy does not resolve names in EDS.
        try:
            ipaddress.ip_address(internal_address)
        except ValueError:
            problems.append(f"internal_address {internal_address!r} is not an IP address")
        http_port = reader.port("http_port", required=True)
        grpc_port = reader.port("grpc_port", required=True)
        internal_port = reader.port("internal_port", required=True)
        app_port = reader.port("app_port")
        metrics_port = reader.port("metrics_port")
        admin_socket = reader.string("admin_socket") or None
        max_body = reader.integer("max_body_bytes", minimum=1)
        pid = reader.integer("pid", minimum=1)
        trust_domain = reader.string("trust_domain") or DEFAULT_TRUST_DOMAIN
        if not _TRUST_DOMAIN.match(trust_domain):
            problems.append(f"trust_domain {trust_domain!r} is not a SPIFFE trust domain")
        key_path = reader.string("key_path") or None
        api_token = reader.secret("dapr_api_token")
        app_api_token = reader.secret("app_api_token")
        access_control = reader.access_control("access_control")
        max_concurrency = reader.integer("app_max_concurrency", minimum=1)
        app_channel_socket = reader.string("app_channel_socket") or None
        unix_domain_socket = reader.string("unix_domain_socket") or None
        actor_forward_socket = reader.string("actor_forward_socket") or None
        api_logging = reader.api_logging("api_logging")
        app_health = reader.app_health("app_health")
        resource_files = reader.resource_files("resources")
        endpoint_secrets = reader.endpoint_secrets("http_endpoint_secrets")
        resources_paths = reader.strings("resources_paths")
        config_path = reader.string("config_path") or None
        configuration = reader.string("configuration") or None
        resources = _invocation_resources(
            resource_files, app_id, namespace if namespace_set else None, problems
        )
        tracing = reader.tracing("tracing")
        runtime_metrics_socket = reader.string("runtime_metrics_socket") or None
        api_access = reader.api_access("api_access")
        pipelines = reader.pipelines("pipelines")
        runtime_workers = reader.integer("runtime_workers", minimum=1)
        if problems:
            raise SidecarMetadataError(f"node {node_id!r}: " + "; ".join(problems))
        assert http_port is not None and grpc_port is not None and internal_port is not None
        sidecar = cls(
            node_id=node_id,
            app_id=app_id,
            namespace=namespace,
            namespace_set=namespace_set,
            app_port=app_port,
            app_protocol=next((p for p in APP_PROTOCOLS if p == protocol), "http"),
            api_transport="http" if transport == "http" else "ext_proc",
            http_port=http_port,
            grpc_port=grpc_port,
            internal_port=internal_port,
            internal_address=internal_address,
            metrics_port=metrics_port,
            admin_socket=admin_socket,
            max_body_bytes=max_body if max_body is not None else DEFAULT_MAX_BODY_BYTES,
            pid=pid,
            trust_domain=trust_domain,
            key_path=key_path,
            access_control=access_control,
            api_token=api_token,
            app_api_token=app_api_token,
            app_max_concurrency=max_concurrency,
            app_channel_socket=app_channel_socket,
            unix_domain_socket=unix_domain_socket,
            actor_forward_socket=actor_forward_socket,
            api_logging=api_logging,
            app_health=app_health,
            resource_files=resource_files,
            endpoint_secrets=endpoint_secrets,
            resources_paths=resources_paths,
            config_path=config_path,
            configuration=configuration,
            **_by_kind(resources),
            tracing=tracing,
            runtime_metrics_socket=runtime_metrics_socket,
            api_access=api_access,
            runtime_workers=runtime_workers or 1,
        )
        try:
            return sidecar.with_pipelines(*pipelines)
        except ResourceError as exc:
            raise SidecarMetadataError(f"node {node_id!r}: {exc}") from None

    def to_node_metadata(self) -> dict[str, Any]:
        """The node metadata that parses back into this sidecar (absent values left out)."""
        out: dict[str, Any] = {
            "app_id": self.app_id,
            **({"namespace": self.namespace} if self.namespace_set else {}),
            "app_protocol": self.app_protocol,
            "api_transport": self.api_transport,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "internal_port": self.internal_port,
            "internal_address": self.internal_address,
            "max_body_bytes": self.max_body_bytes,
            "trust_domain": self.trust_domain,
        }
        for key, value in (
            ("app_port", self.app_port),
            ("metrics_port", self.metrics_port),
            ("admin_socket", self.admin_socket),
            ("pid", self.pid),
            ("key_path", self.key_path),
            ("dapr_api_token", self.api_token),
            ("app_api_token", self.app_api_token),
            ("app_max_concurrency", self.app_max_concurrency),
            ("app_channel_socket", self.app_channel_socket),
            ("unix_domain_socket", self.unix_domain_socket),
            ("actor_forward_socket", self.actor_forward_socket),
            ("runtime_metrics_socket", self.runtime_metrics_socket),
            ("configuration", self.configuration),
            ("runtime_workers", self.runtime_workers if self.runtime_workers > 1 else None),
        ):
            if value is not None:
                out[key] = value
        if self.access_control is not None:
            out["access_control"] = access_control_metadata(self.access_control)
        if self.api_logging is not None:
            out["api_logging"] = {
                "path": self.api_logging.path,
                "omit_health_checks": self.api_logging.omit_health_checks,
                "obfuscate_urls": self.api_logging.obfuscate_urls,
            }
        if self.resource_files:
            out["resources"] = [{"file": f, "yaml": text} for f, text in self.resource_files]
        if self.endpoint_secrets:
            secrets: dict[str, dict[str, str]] = {}
            for endpoint, name, value in self.endpoint_secrets:
                secrets.setdefault(endpoint, {})[name] = value
            out["http_endpoint_secrets"] = secrets
        if self.resources_paths:
            out["resources_paths"] = list(self.resources_paths)
        if self.config_path is not None:
            out["config_path"] = self.config_path
        if self.app_health is not None:
            out["app_health"] = {
                "socket": self.app_health.socket,
                "interval_ms": self.app_health.interval_ms,
            }
        if self.tracing is not None:
            out["tracing"] = self.tracing.to_metadata()
        if self.api_access is not None:
            out["api_access"] = self.api_access.to_metadata()
        if self.http_pipeline or self.app_http_pipeline:
            out["pipelines"] = pipelines_metadata(self.http_pipeline, self.app_http_pipeline)
        return out


def configuration_source(namespace: str, name: str) -> str:
    """How errors name a cluster's Configuration (as tandem.k8s.mesh_sources names files)."""
    return f"k8s:Configuration/{namespace}/{name}"


_Invocation = Resiliency | HTTPEndpoint | HTTPRoute | BackendTrafficPolicy | Component


def _for_app(resources: list[Any], app_id: str, namespace: str | None) -> list[_Invocation]:
    return [
        r
        for r in resources
        if isinstance(r, _Invocation)
        and (not isinstance(r, Component) or r.type.startswith("middleware.http."))
        and applies(r, app_id, namespace)
    ]


def pipelines_metadata(
    http: tuple[PipelineHandler, ...], app: tuple[PipelineHandler, ...]
) -> dict[str, Any]:
    """The Configuration's pipelines as the node metadata carries them."""

    def handlers(items: tuple[PipelineHandler, ...]) -> list[dict[str, str]]:
        return [{"name": h.name, "type": h.type, "version": h.version} for h in items]

    return {"http": handlers(http), "app_http": handlers(app)}


def _by_kind(resources: list[_Invocation]) -> dict[str, Any]:
    """The Sidecar fields each kind of invocation resource fills."""
    return {
        "resiliencies": tuple(r for r in resources if isinstance(r, Resiliency)),
        "http_endpoints": tuple(r for r in resources if isinstance(r, HTTPEndpoint)),
        "http_routes": tuple(r for r in resources if isinstance(r, HTTPRoute)),
        "traffic_policies": tuple(r for r in resources if isinstance(r, BackendTrafficPolicy)),
        "middleware_components": tuple(r for r in resources if isinstance(r, Component)),
    }


def _invocation_resources(
    files: tuple[tuple[str, str], ...], app_id: str, namespace: str | None, problems: list[str]
) -> list[_Invocation]:
    out: list[_Invocation] = []
    for file, text in files:
        try:
            out += _for_app(parse_text(text, file), app_id, namespace)
        except ResourceError as exc:
            problems.append(str(exc))
    return out


def access_control_metadata(access: AccessControl) -> dict[str, Any]:
    """``spec.accessControl`` in Dapr's YAML shape, as the node metadata carries it."""
    return {
        "defaultAction": access.default_action,
        "trustDomain": access.trust_domain,
        "policies": [
            {
                "appId": policy.app_id,
                **({"defaultAction": policy.default_action} if policy.default_action else {}),
                "trustDomain": policy.trust_domain,
                "namespace": policy.namespace,
                "operations": [
                    {"name": op.name, "httpVerb": list(op.http_verbs), "action": op.action}
                    for op in policy.operations
                ],
            }
            for policy in access.policies
        ],
    }


@dataclass(slots=True)
class _Reader:
    """Typed reads from the metadata dict, collecting problems instead of stopping at one."""

    data: Mapping[str, Any]
    problems: list[str]

    def string(self, key: str, *, required: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problems.append(f"{key} is required")
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{key} must be a string, got {type(value).__name__}")
            return ""
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int = 0) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.problems.append(f"{key} is required")
            return None
        # bool is an int in Python; a Struct bool is never a valid number here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{key} must be a number, got {type(value).__name__}")
            return None
        if isinstance(value, float) and not value.is_integer():
            self.problems.append(f"{key} must be a whole number, got {value}")
            return None
        number = int(value)
        if number < minimum:
            self.problems.append(f"{key} must be at least {minimum}, got {number}")
            return None
        return number

    def secret(self, key: str) -> str | None:
        """A token: its problems are reported without ever repeating its value."""
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _TOKEN.match(value):
            self.problems.append(f"{key} must be 1-4096 printable ASCII characters")
            return None
        return value

    def access_control(self, key: str) -> AccessControl | None:
        value = self.data.get(key)
        if value is None:
            return None
        try:
            return parse_access_control(Node.root(f"node metadata {key}", value))
        except ResourceError as exc:
            self.problems.append(str(exc))
            return None

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"{key} must be a list of strings")
            return ()
        return tuple(value)

    def endpoint_secrets(self, key: str) -> tuple[tuple[str, str, str], ...]:
        """Endpoint → {field: value}; a problem names the key, never a value."""
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, Mapping) or not all(
            isinstance(e, str)
            and isinstance(fields, Mapping)
            and all(isinstance(f, str) and isinstance(v, str) for f, v in fields.items())
            for e, fields in value.items()
        ):
            self.problems.append(f"{key} must map endpoint names to {{field: text}} maps")
            return ()
        return tuple(
            (e, f, v) for e, fields in sorted(value.items()) for f, v in sorted(fields.items())
        )

    def resource_files(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        entries = value if isinstance(value, list | tuple) else None
        if entries is None or not all(
            isinstance(e, Mapping)
            and isinstance(e.get("file"), str)
            and isinstance(e.get("yaml"), str)
            for e in entries
        ):
            self.problems.append(f"{key} must be a list of {{file, yaml}} maps")
            return ()
        return tuple((e["file"], e["yaml"]) for e in entries)

    def api_logging(self, key: str) -> ApiLogging | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not isinstance(value.get("path"), str):
            self.problems.append(f"{key} must be a map with a string path")
            return None
        flags = {}
        for flag in ("omit_health_checks", "obfuscate_urls"):
            flag_value = value.get(flag, False)
            if not isinstance(flag_value, bool):
                self.problems.append(f"{key}.{flag} must be a boolean")
                return None
            flags[flag] = flag_value
        return ApiLogging(path=value["path"], **flags)

    def app_health(self, key: str) -> AppHealthCheck | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problems.append(f"{key} must be a map")
            return None
        nested = _Reader(value, self.problems)
        socket = nested.string("socket", required=True)
        interval = nested.integer("interval_ms", required=True, minimum=1)
        if not socket or interval is None:
            return None
        return AppHealthCheck(socket=socket, interval_ms=interval)

    def api_access(self, key: str) -> ApiAccess | None:
        value = self.data.get(key)
        if value is None:
            return None
        lists: dict[str, tuple[ApiRule, ...]] = {}
        for which in ("allowed", "denied"):
            items = value.get(which, []) if isinstance(value, Mapping) else None
            if not isinstance(items, list) or not all(
                isinstance(i, Mapping)
                and all(isinstance(i.get(k), str) for k in ("name", "version", "protocol"))
                for i in items
            ):
                self.problems.append(f"{key}.{which} must be a list of name/version/protocol")
                return None
            lists[which] = tuple(ApiRule(i["name"], i["version"], i["protocol"]) for i in items)
        return ApiAccess(**lists)

    def pipelines(
        self, key: str
    ) -> tuple[tuple[PipelineHandler, ...], tuple[PipelineHandler, ...]]:
        value = self.data.get(key)
        if value is None:
            return (), ()
        out = []
        for which in ("http", "app_http"):
            items = value.get(which, []) if isinstance(value, Mapping) else None
            if not isinstance(items, list) or not all(
                isinstance(i, Mapping) and all(isinstance(i.get(k), str) for k in ("name", "type"))
                for i in items
            ):
                self.problems.append(f"{key}.{which} must be a list of name/type maps")
                return (), ()
            out.append(
                tuple(
                    PipelineHandler(i["name"], i["type"], i.get("version") or "v1") for i in items
                )
            )
        return out[0], out[1]

    def tracing(self, key: str) -> TraceExport | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problems.append(f"{key} must be a map")
            return None
        try:
            return TraceExport.from_metadata(value)
        except TraceExportError as exc:
            self.problems.append(f"{key}: {exc}")
            return None

    def port(self, key: str, *, required: bool = False) -> int | None:
        number = self.integer(key, required=required, minimum=1)
        if number is not None and number > 65535:
            self.problems.append(f"{key} must be a TCP port (1-65535), got {number}")
            return None
        return number


@dataclass(frozen=True, slots=True)
class MeshSecurity:
    """Mesh-wide TLS material for translation: whether mTLS is on, the trust bundle, and
    each admitted node's workload certificate (PEM; the key stays with the sidecar)."""

    mtls: bool = False
    trust_bundle_pem: str = ""
    certificates: Mapping[str, str] = field(default_factory=dict)
    # Workload certificates' lifetime: a connection between sidecars must not outlive its
    # certificate (translate/clusters.py bounds its duration).
    certificate_ttl: dt.timedelta | None = None


@dataclass(frozen=True, slots=True)
class Mesh:
    """Every live sidecar. Sidecars are kept sorted by node id so translation is stable."""

    sidecars: tuple[Sidecar, ...] = ()
    security: MeshSecurity = field(default_factory=MeshSecurity)
    _by_app: Mapping[str, tuple[Sidecar, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.sidecars, key=lambda s: s.node_id))
        ids = [s.node_id for s in ordered]
        if len(set(ids)) != len(ids):
            raise ValueError("a mesh holds each node id once")
        by_app: dict[str, list[Sidecar]] = {}
        for sidecar in ordered:
            by_app.setdefault(sidecar.app_id, []).append(sidecar)
        object.__setattr__(self, "sidecars", ordered)
        object.__setattr__(
            self, "_by_app", {app: tuple(group) for app, group in sorted(by_app.items())}
        )

    @classmethod
    def of(cls, sidecars: Iterable[Sidecar], security: MeshSecurity | None = None) -> Mesh:
        return cls(tuple(sidecars), security if security is not None else MeshSecurity())

    def app_ids(self) -> tuple[str, ...]:
        """Known app ids, sorted."""
        return tuple(self._by_app)

    def instances(self, app_id: str) -> tuple[Sidecar, ...]:
        """Live sidecars of one app id, sorted by node id; empty if the app is unknown."""
        return self._by_app.get(app_id, ())

    def get(self, node_id: str) -> Sidecar | None:
        for sidecar in self.sidecars:
            if sidecar.node_id == node_id:
                return sidecar
        return None
