"""``kind: Configuration`` — the app's runtime settings (``--config FILE``).

Fields this model does not know are ignored, as Dapr ignores them; a known field with
the wrong type is an error. Access control lives in ``access_control.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ._parse import Node
from .access_control import AccessControl, parse_access_control
from .common import MetadataItem, parse_metadata_items, parse_object_meta


@dataclass(frozen=True, slots=True)
class OtelExporter:
    endpoint_address: str
    protocol: str  # grpc | http
    is_secure: bool = False
    headers: tuple[MetadataItem, ...] = ()
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Tracing:
    sampling_rate: float | None = None  # None: not configured
    stdout: bool = False
    zipkin_endpoint: str | None = None
    otel: OtelExporter | None = None


@dataclass(frozen=True, slots=True)
class MetricRule:
    name: str
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # label → {new: regex}


@dataclass(frozen=True, slots=True)
class Metrics:
    enabled: bool = True
    record_error_codes: bool = False
    http_increased_cardinality: bool | None = None  # None: the runtime's default
    http_path_matching: tuple[str, ...] = ()
    http_exclude_verbs: bool = False
    rules: tuple[MetricRule, ...] = ()
    latency_distribution_buckets: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MTLS:
    enabled: bool = False
    workload_cert_ttl: timedelta | None = None
    allowed_clock_skew: timedelta | None = None
    sentry_address: str = ""
    control_plane_trust_domain: str = ""


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class ApiRule:
    name: str  # e.g. "state", "invoke"
    version: str = ""  # e.g. "v1.0", "v1.0-alpha1" (HTTP), "v1", "v1alpha1" (gRPC)
    protocol: str = ""  # http | grpc; a rule without both matches nothing (warned at start)

    @property
    def complete(self) -> bool:
        return bool(self.version and self.protocol)


@dataclass(frozen=True, slots=True)
class SecretScope:
    store_name: str
    default_access: str = "allow"
    allowed_secrets: tuple[str, ...] = ()
    denied_secrets: tuple[str, ...] = ()

    def allows(self, secret: str) -> bool:
        # An allow list, once given, is the whole truth; otherwise deny list, then default.
        if self.allowed_secrets:
            return secret in self.allowed_secrets
        if secret in self.denied_secrets:
            return False
        return self.default_access == "allow"


@dataclass(frozen=True, slots=True)
class NameResolution:
    component: str
    version: str = "v1"
    configuration: Any = None  # free-form, handed to the resolver as data


@dataclass(frozen=True, slots=True)
class ApiLogging:
    enabled: bool = False
    obfuscate_urls: bool = False
    omit_health_checks: bool = False


# The middleware with an Envoy equivalent (tandem.resources.middleware compiles them).
SUPPORTED_MIDDLEWARE = (
    "middleware.http.bearer",
    "middleware.http.ratelimit",
    "middleware.http.routeralias",
    "middleware.http.routerchecker",
    "middleware.http.uppercase",
)


@dataclass(frozen=True, slots=True)
class PipelineHandler:
    name: str  # a middleware Component's name
    type: str  # middleware.http.*
    version: str = "v1"


@dataclass(frozen=True, slots=True)
class WorkflowSettings:
    max_concurrent_workflow_invocations: int | None = None
    max_concurrent_activity_invocations: int | None = None
    retention: Mapping[str, timedelta] = field(default_factory=dict)  # anyTerminal, completed…


@dataclass(frozen=True, slots=True)
class Configuration:
    name: str
    namespace: str | None = None
    tracing: Tracing = Tracing()
    metrics: Metrics = Metrics()
    mtls: MTLS = MTLS()
    access_control: AccessControl | None = None
    features: tuple[Feature, ...] = ()
    api_allowed: tuple[ApiRule, ...] = ()
    api_denied: tuple[ApiRule, ...] = ()
    secret_scopes: tuple[SecretScope, ...] = ()
    name_resolution: NameResolution | None = None
    denied_components: tuple[str, ...] = ()  # "bindings.smtp" or "secretstores.local.file/v1"
    api_logging: ApiLogging = ApiLogging()
    http_pipeline: tuple[PipelineHandler, ...] = ()
    app_http_pipeline: tuple[PipelineHandler, ...] = ()
    workflow: WorkflowSettings = WorkflowSettings()
    source: str = field(default="", compare=False)

    def feature_enabled(self, name: str) -> bool:
        return any(f.enabled for f in self.features if f.name.lower() == name.lower())

    def secret_scope(self, store: str) -> SecretScope | None:
        return next((s for s in self.secret_scopes if s.store_name == store), None)


def _tracing(node: Node) -> Tracing:
    rate_node = node.get("samplingRate")
    rate_text = rate_node.text().strip()
    rate = None
    if rate_text:
        try:
            rate = float(rate_text)
        except ValueError:
            raise rate_node.error(f"{rate_text!r} is not a number between 0 and 1") from None
        if not 0.0 <= rate <= 1.0:
            raise rate_node.error(f"{rate_text!r} must be between 0 and 1")
    otel_node = node.get("otel")
    otel = None
    if otel_node.present:
        otel = OtelExporter(
            endpoint_address=otel_node.get("endpointAddress").required_text(),
            protocol=otel_node.get("protocol").require_present().choice(("grpc", "http"), ""),
            is_secure=otel_node.get("isSecure").boolean(),
            headers=parse_metadata_items(otel_node.get("headers"), what="header"),
            timeout=otel_node.get("timeout").optional_duration(),
        )
    return Tracing(
        sampling_rate=rate,
        stdout=node.get("stdout").boolean(),
        zipkin_endpoint=node.get("zipkin").get("endpointAddress").text().strip() or None,
        otel=otel,
    )


def _metrics(node: Node) -> Metrics:
    http = node.get("http")
    rules = tuple(
        MetricRule(
            name=rule.get("name").required_text(),
            labels={
                label.get("name").required_text(): label.get("regex").text_map()
                for label in rule.get("labels").items()
            },
        )
        for rule in node.get("rules").items()
    )
    buckets = tuple(
        item.integer(0, minimum=0) for item in node.get("latencyDistributionBuckets").items()
    )
    return Metrics(
        enabled=node.get("enabled").boolean(True),
        record_error_codes=node.get("recordErrorCodes").boolean(),
        http_increased_cardinality=(
            http.get("increasedCardinality").boolean()
            if http.get("increasedCardinality").present
            else None
        ),
        http_path_matching=http.get("pathMatching").text_list(),
        http_exclude_verbs=http.get("excludeVerbs").boolean(),
        rules=rules,
        latency_distribution_buckets=buckets,
    )


def _mtls(node: Node) -> MTLS:
    return MTLS(
        enabled=node.get("enabled").boolean(),
        workload_cert_ttl=node.get("workloadCertTTL").optional_duration(),
        allowed_clock_skew=node.get("allowedClockSkew").optional_duration(),
        sentry_address=node.get("sentryAddress").text(),
        control_plane_trust_domain=node.get("controlPlaneTrustDomain").text(),
    )


def _api_rules(node: Node) -> tuple[ApiRule, ...]:
    return tuple(
        ApiRule(
            name=rule.get("name").required_text(),
            version=rule.get("version").text().strip(),
            protocol=rule.get("protocol").choice(("http", "grpc"), ""),
        )
        for rule in node.items()
    )


def _secret_scope(node: Node) -> SecretScope:
    return SecretScope(
        store_name=node.get("storeName").required_text(),
        default_access=node.get("defaultAccess").choice(("allow", "deny"), "allow"),
        allowed_secrets=node.get("allowedSecrets").text_list(),
        denied_secrets=node.get("deniedSecrets").text_list(),
    )


def _name_resolution(node: Node) -> NameResolution | None:
    if not node.present:
        return None
    return NameResolution(
        component=node.get("component").required_text(),
        version=node.get("version").text().strip() or "v1",
        configuration=node.get("configuration").plain(),
    )


def _pipeline(node: Node) -> tuple[PipelineHandler, ...]:
    handlers = []
    for item in node.get("handlers").items():
        type_node = item.get("type")
        type_ = type_node.required_text()
        if not type_.startswith("middleware.http."):
            raise type_node.error(f"{type_!r} is not an HTTP middleware (middleware.http.*)")
        if type_ not in SUPPORTED_MIDDLEWARE:
            raise type_node.error(
                f"{type_} is not supported by Tandem, which compiles middleware into Envoy "
                f"(supported: {', '.join(SUPPORTED_MIDDLEWARE)})"
            )
        handlers.append(
            PipelineHandler(
                name=item.get("name").required_text(),
                type=type_,
                version=item.get("version").text().strip() or "v1",
            )
        )
    return tuple(handlers)


def _workflow(node: Node) -> WorkflowSettings:
    retention = {
        key: value.require_present().duration(timedelta(0))
        for key, value in node.get("stateRetentionPolicy").entries()
    }
    return WorkflowSettings(
        max_concurrent_workflow_invocations=node.get(
            "maxConcurrentWorkflowInvocations"
        ).optional_integer(),
        max_concurrent_activity_invocations=node.get(
            "maxConcurrentActivityInvocations"
        ).optional_integer(),
        retention=retention,
    )


def parse_configuration(doc: Node) -> Configuration:
    meta = parse_object_meta(doc)
    spec = doc.get("spec")
    api = spec.get("api")
    api_logging = spec.get("logging").get("apiLogging")
    return Configuration(
        name=meta.name,
        namespace=meta.namespace,
        tracing=_tracing(spec.get("tracing")),
        metrics=_metrics(spec.get("metrics")),
        mtls=_mtls(spec.get("mtls")),
        access_control=parse_access_control(spec.get("accessControl")),
        features=tuple(
            Feature(name=f.get("name").required_text(), enabled=f.get("enabled").boolean())
            for f in spec.get("features").items()
        ),
        api_allowed=_api_rules(api.get("allowed")),
        api_denied=_api_rules(api.get("denied")),
        secret_scopes=tuple(_secret_scope(s) for s in spec.get("secrets").get("scopes").items()),
        name_resolution=_name_resolution(spec.get("nameResolution")),
        denied_components=spec.get("components").get("deny").text_list(),
        api_logging=ApiLogging(
            enabled=api_logging.get("enabled").boolean(),
            obfuscate_urls=api_logging.get("obfuscateURLs").boolean(),
            omit_health_checks=api_logging.get("omitHealthChecks").boolean(),
        ),
        http_pipeline=_pipeline(spec.get("httpPipeline")),
        app_http_pipeline=_pipeline(spec.get("appHttpPipeline")),
        workflow=_workflow(spec.get("workflow")),
        source=doc.file,
    )
