from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tandem.resources import (
    MTLS,
    AccessControl,
    ApiLogging,
    ApiRule,
    AppPolicy,
    Configuration,
    Feature,
    MetadataItem,
    NameResolution,
    OperationRule,
    OtelExporter,
    PipelineHandler,
    ResourceError,
    ResourceSet,
    SecretScope,
    Tracing,
    load_configuration,
)

FULL_CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
  namespace: default
spec:
  tracing:
    samplingRate: "0.25"
    stdout: true
    zipkin:
      endpointAddress: http://localhost:9411/api/v2/spans
    otel:
      endpointAddress: otel-collector:4317
      protocol: grpc
      isSecure: false
      headers:
      - name: api-key
        value: abc
      timeout: 10s
  metrics:
    enabled: true
    recordErrorCodes: true
    http:
      increasedCardinality: false
      pathMatching: ["/orders/{id}"]
      excludeVerbs: true
    rules:
    - name: dapr_runtime_service_invocation_req_sent_total
      labels:
      - name: method
        regex:
          "orders/": "orders/.+"
    latencyDistributionBuckets: [1, 2, 5, 10, 50, 100]
  mtls:
    enabled: true
    workloadCertTTL: 24h
    allowedClockSkew: 15m
    controlPlaneTrustDomain: cluster.local
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: app1
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - name: /op1
        httpVerb: [post, GET]
        action: deny
      - name: /op2/*
        httpVerb: ["*"]
        action: allow
    - appId: app2
      operations:
      - name: /admin/**
        action: Deny
  httpPipeline:
    handlers:
    - name: auth
      type: middleware.http.bearer
  appHttpPipeline:
    handlers:
    - name: ratelimit
      type: middleware.http.ratelimit
      version: v1
  features:
  - name: SchedulerReminders
    enabled: true
  - name: HotReload
    enabled: false
  api:
    allowed:
    - name: state
      version: v1.0
      protocol: http
    - name: publish
      version: v1.0
    denied:
    - name: invoke
      version: v1.0
      protocol: grpc
  secrets:
    scopes:
    - storeName: kubernetes
      defaultAccess: deny
      allowedSecrets: ["redis-password"]
    - storeName: localstore
      deniedSecrets: ["root-key"]
  nameResolution:
    component: consul
    version: v1
    configuration:
      selfRegister: true
      client: {address: "127.0.0.1:8500"}
  components:
    deny: ["bindings.smtp", "secretstores.local.file/v1"]
  logging:
    apiLogging:
      enabled: true
      obfuscateURLs: true
      omitHealthChecks: true
  workflow:
    maxConcurrentWorkflowInvocations: 100
    maxConcurrentActivityInvocations: 50
    stateRetentionPolicy:
      anyTerminal: 24h
      failed: 168h
  someFutureField: {anything: [1, 2]}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[[str], Path]:
    def _write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def test_full_configuration_loads_every_section(config_file: Callable[[str], Path]) -> None:
    config = load_configuration(config_file(FULL_CONFIG))
    assert (config.name, config.namespace) == ("appconfig", "default")
    assert config.tracing == Tracing(
        sampling_rate=0.25,
        stdout=True,
        zipkin_endpoint="http://localhost:9411/api/v2/spans",
        otel=OtelExporter(
            endpoint_address="otel-collector:4317",
            protocol="grpc",
            headers=(MetadataItem("api-key", "abc"),),
            timeout=timedelta(seconds=10),
        ),
    )
    assert config.metrics.record_error_codes
    assert config.metrics.http_increased_cardinality is False
    assert config.metrics.http_path_matching == ("/orders/{id}",)
    assert config.metrics.rules[0].labels == {"method": {"orders/": "orders/.+"}}
    assert config.metrics.latency_distribution_buckets == (1, 2, 5, 10, 50, 100)
    assert config.mtls == MTLS(
        enabled=True,
        workload_cert_ttl=timedelta(hours=24),
        allowed_clock_skew=timedelta(minutes=15),
        control_plane_trust_domain="cluster.local",
    )
    assert config.access_control == AccessControl(
        default_action="deny",
        trust_domain="public",
        policies=(
            AppPolicy(
                app_id="app1",
                default_action="allow",
                operations=(
                    OperationRule("/op1", ("POST", "GET"), "deny"),
                    OperationRule("/op2/*", ("*",), "allow"),
                ),
            ),
            AppPolicy(app_id="app2", operations=(OperationRule("/admin/**", ("*",), "deny"),)),
        ),
    )
    assert config.http_pipeline == (PipelineHandler("auth", "middleware.http.bearer"),)
    assert config.app_http_pipeline == (PipelineHandler("ratelimit", "middleware.http.ratelimit"),)
    assert config.features == (Feature("SchedulerReminders", True), Feature("HotReload", False))
    assert config.api_allowed == (ApiRule("state", "v1.0", "http"), ApiRule("publish", "v1.0"))
    assert config.api_denied == (ApiRule("invoke", "v1.0", "grpc"),)
    assert config.secret_scopes == (
        SecretScope("kubernetes", "deny", ("redis-password",)),
        SecretScope("localstore", denied_secrets=("root-key",)),
    )
    assert config.name_resolution == NameResolution(
        "consul", "v1", {"selfRegister": True, "client": {"address": "127.0.0.1:8500"}}
    )
    assert config.denied_components == ("bindings.smtp", "secretstores.local.file/v1")
    assert config.api_logging == ApiLogging(True, True, True)
    assert config.workflow.max_concurrent_workflow_invocations == 100
    assert config.workflow.max_concurrent_activity_invocations == 50
    assert config.workflow.retention == {
        "anyTerminal": timedelta(hours=24),
        "failed": timedelta(hours=168),
    }


def test_configuration_without_spec_has_dapr_defaults(config_file: Callable[[str], Path]) -> None:
    config = load_configuration(
        config_file("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n")
    )
    assert config == Configuration(name="c")
    assert config.metrics.enabled
    assert not config.mtls.enabled
    assert config.access_control is None
    assert config.tracing.sampling_rate is None


def test_feature_lookup_is_by_name_and_enabled_flag(config_file: Callable[[str], Path]) -> None:
    config = load_configuration(config_file(FULL_CONFIG))
    assert config.feature_enabled("SchedulerReminders")
    assert config.feature_enabled("schedulerreminders")
    assert not config.feature_enabled("HotReload")
    assert not config.feature_enabled("NotListed")


def test_secret_scope_allow_list_wins_then_deny_list_then_default(
    config_file: Callable[[str], Path],
) -> None:
    config = load_configuration(config_file(FULL_CONFIG))
    kubernetes = config.secret_scope("kubernetes")
    local = config.secret_scope("localstore")
    assert kubernetes is not None and local is not None
    assert kubernetes.allows("redis-password")
    assert not kubernetes.allows("db-password")
    assert not local.allows("root-key")
    assert local.allows("anything-else")
    assert config.secret_scope("vault") is None


def test_load_configuration_skips_other_documents_in_the_file(
    config_file: Callable[[str], Path],
) -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\n"
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\n"
        "spec: {type: state.in-memory}\n---\n" + FULL_CONFIG
    )
    assert load_configuration(config_file(text)).name == "appconfig"


def test_load_configuration_without_configuration_names_the_file(
    config_file: Callable[[str], Path],
) -> None:
    path = config_file(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\n"
        "spec: {type: state.in-memory}\n"
    )
    with pytest.raises(ResourceError, match="no Configuration document") as info:
        load_configuration(path)
    assert info.value.file == str(path)


def test_load_configuration_of_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="no such file") as info:
        load_configuration(tmp_path / "absent.yaml")
    assert info.value.file == str(tmp_path / "absent.yaml")


def _config(spec: str) -> str:
    return "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n" + spec


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        pytest.param(
            "  tracing: {samplingRate: '2'}",
            "spec.tracing.samplingRate",
            "'2' must be between 0 and 1",
            id="sampling-above-one",
        ),
        pytest.param(
            "  tracing: {samplingRate: often}",
            "spec.tracing.samplingRate",
            "'often' is not a number between 0 and 1",
            id="sampling-not-number",
        ),
        pytest.param(
            "  tracing: {samplingRate: 1}",
            "spec.tracing.samplingRate",
            "expected a string, got integer 1 (quote it)",
            id="sampling-unquoted",
        ),
        pytest.param(
            "  tracing: {stdout: 'yes'}",
            "spec.tracing.stdout",
            "expected true or false",
            id="stdout-string",
        ),
        pytest.param(
            "  tracing: {otel: {protocol: grpc}}",
            "spec.tracing.otel.endpointAddress",
            "is required",
            id="otel-without-endpoint",
        ),
        pytest.param(
            "  tracing: {otel: {endpointAddress: 'c:4317', protocol: udp}}",
            "spec.tracing.otel.protocol",
            "must be one of grpc, http, got 'udp'",
            id="otel-bad-protocol",
        ),
        pytest.param(
            "  mtls: {enabled: true, workloadCertTTL: 1 day}",
            "spec.mtls.workloadCertTTL",
            "invalid duration '1 day'",
            id="bad-cert-ttl",
        ),
        pytest.param(
            "  mtls: {allowedClockSkew: 15}",
            "spec.mtls.allowedClockSkew",
            "expected a duration string",
            id="clock-skew-number",
        ),
        pytest.param(
            "  metrics: {latencyDistributionBuckets: [1, fast]}",
            "spec.metrics.latencyDistributionBuckets[1]",
            "expected an integer",
            id="bucket-not-int",
        ),
        pytest.param(
            "  accessControl: {defaultAction: maybe}",
            "spec.accessControl.defaultAction",
            "must be one of allow, deny, got 'maybe'",
            id="acl-bad-default",
        ),
        pytest.param(
            "  accessControl:\n    policies:\n    - defaultAction: allow",
            "spec.accessControl.policies[0].appId",
            "is required",
            id="acl-policy-without-app",
        ),
        pytest.param(
            "  accessControl:\n    policies:\n    - appId: a\n      operations:\n      - name: /op",
            "spec.accessControl.policies[0].operations[0].action",
            "is required",
            id="acl-operation-without-action",
        ),
        pytest.param(
            "  accessControl:\n    policies:\n    - appId: a\n      operations:\n"
            "      - {name: /op, httpVerb: GET, action: allow}",
            "spec.accessControl.policies[0].operations[0].httpVerb",
            "expected a list, got string 'GET'",
            id="acl-verb-not-list",
        ),
        pytest.param(
            "  features:\n  - name: HotReload\n    enabled: sure",
            "spec.features[0].enabled",
            "expected true or false, got string 'sure'",
            id="feature-enabled-string",
        ),
        pytest.param(
            "  features: {HotReload: true}",
            "spec.features",
            "expected a list, got a mapping",
            id="features-as-map",
        ),
        pytest.param(
            "  api: {allowed: [{name: state, version: v1.0, protocol: tcp}]}",
            "spec.api.allowed[0].protocol",
            "must be one of http, grpc",
            id="api-bad-protocol",
        ),
        pytest.param(
            "  secrets: {scopes: [{storeName: k, defaultAccess: none}]}",
            "spec.secrets.scopes[0].defaultAccess",
            "must be one of allow, deny",
            id="secret-scope-bad-access",
        ),
        pytest.param(
            "  nameResolution: {version: v1}",
            "spec.nameResolution.component",
            "is required",
            id="name-resolution-without-component",
        ),
        pytest.param(
            "  httpPipeline: {handlers: [{name: ratelimit, type: state.redis}]}",
            "spec.httpPipeline.handlers[0].type",
            "is not an HTTP middleware",
            id="pipeline-not-middleware",
        ),
        pytest.param(
            "  components: {deny: bindings.smtp}",
            "spec.components.deny",
            "expected a list",
            id="deny-not-list",
        ),
        pytest.param(
            "  logging: {apiLogging: {enabled: 1}}",
            "spec.logging.apiLogging.enabled",
            "expected true or false, got integer 1",
            id="api-logging-int",
        ),
        pytest.param(
            "  workflow: {stateRetentionPolicy: {anyTerminal: forever}}",
            "spec.workflow.stateRetentionPolicy.anyTerminal",
            "invalid duration 'forever'",
            id="retention-bad-duration",
        ),
        pytest.param(
            "  workflow: {maxConcurrentWorkflowInvocations: '100'}",
            "spec.workflow.maxConcurrentWorkflowInvocations",
            "expected an integer, got string '100'",
            id="workflow-limit-string",
        ),
    ],
)
def test_invalid_configuration_error_names_file_field_and_reason(
    config_file: Callable[[str], Path], spec: str, field: str, reason: str
) -> None:
    path = config_file(_config(spec + "\n"))
    with pytest.raises(ResourceError) as info:
        load_configuration(path)
    err = info.value
    assert (err.file, err.field) == (str(path), field)
    assert reason in err.reason
    assert str(err).startswith(f"{path}:")
    assert f": {field}: " in str(err)


def test_configuration_in_resources_folder_is_loaded_too(
    load: Callable[..., ResourceSet],
) -> None:
    resources = load(FULL_CONFIG)
    assert [c.name for c in resources.configurations] == ["appconfig"]
