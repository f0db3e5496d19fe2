"""Loading and validating Dapr resource YAML: Component, Configuration, Resiliency,
Subscription and HTTPEndpoint, as one typed model shared by runtime and control plane."""

from .access_control import AccessControl, AppPolicy, OperationRule
from .common import MetadataItem, SecretKeyRef
from .component import Component
from .configuration import (
    MTLS,
    ApiLogging,
    ApiRule,
    Configuration,
    Feature,
    MetricRule,
    Metrics,
    NameResolution,
    OtelExporter,
    PipelineHandler,
    SecretScope,
    Tracing,
    WorkflowSettings,
)
from .durations import parse_duration
from .errors import ResourceError
from .http_endpoint import ClientTLS, HTTPEndpoint, TLSDocument
from .loader import ResourceSet, load_configuration, load_resources, read_file
from .resiliency import (
    ActorTarget,
    AppTarget,
    CircuitBreakerPolicy,
    ComponentTarget,
    PolicyNames,
    Resiliency,
    RetryPolicy,
    StatusCodes,
)
from .subscription import BulkSubscribe, RoutingRule, Subscription

__all__ = [
    "MTLS",
    "AccessControl",
    "ActorTarget",
    "ApiLogging",
    "ApiRule",
    "AppPolicy",
    "AppTarget",
    "BulkSubscribe",
    "CircuitBreakerPolicy",
    "ClientTLS",
    "Component",
    "ComponentTarget",
    "Configuration",
    "Feature",
    "HTTPEndpoint",
    "MetadataItem",
    "MetricRule",
    "Metrics",
    "NameResolution",
    "OperationRule",
    "OtelExporter",
    "PipelineHandler",
    "PolicyNames",
    "Resiliency",
    "ResourceError",
    "ResourceSet",
    "RetryPolicy",
    "RoutingRule",
    "SecretKeyRef",
    "SecretScope",
    "StatusCodes",
    "Subscription",
    "TLSDocument",
    "Tracing",
    "WorkflowSettings",
    "load_configuration",
    "load_resources",
    "parse_duration",
    "read_file",
]
