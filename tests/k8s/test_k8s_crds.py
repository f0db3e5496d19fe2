"""The chart's dapr.io CRDs accept what Dapr users apply (the project's own example YAML
and Dapr's documented shapes) and refuse what is malformed; unknown fields count as
refused, since the API server would silently drop them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from k8s_schemas import CHART, ROOT, crd_errors, crds, documents, structural_problems


def _project_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every dapr.io resource in the project's example files: the compat apps' components
    and the resources embedded in the golden translator inputs."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((ROOT / "tests" / "compat" / "apps" / "components").glob("*.yaml")):
        found += [(path.name, doc) for doc in documents(path.read_text())]
    for path in sorted((ROOT / "tests" / "golden" / "in").glob("*.yaml")):
        case = yaml.safe_load(path.read_text())
        for sidecar in case.get("sidecars") or []:
            for resource in (sidecar.get("metadata") or {}).get("resources") or []:
                found += [(path.name, doc) for doc in documents(resource["yaml"])]
    return [(name, doc) for name, doc in found if str(doc.get("apiVersion")).startswith("dapr.io/")]


PROJECT = _project_examples()

# Dapr's documented shapes (docs.dapr.io reference pages), one per kind and version.
DAPR_DOCUMENTED = """
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: statestore, namespace: default}
spec:
  type: state.redis
  version: v1
  initTimeout: 5s
  ignoreErrors: false
  metadata:
  - {name: redisHost, value: "localhost:6379"}
  - name: redisPassword
    secretKeyRef: {name: redis-secret, key: password}
  - {name: actorStateStore, value: "true"}
  - {name: maxRetries, value: 3}
  - {name: enableTLS, value: false}
  - {name: hostFromEnv, envRef: REDIS_HOST}
auth: {secretStore: my-secrets}
scopes: [app1, app2]
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: order-sub}
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    rules:
    - {match: 'event.type == "widget"', path: /widgets}
    default: /orders
  deadLetterTopic: poison
  metadata: {rawPayload: "true"}
  bulkSubscribe: {enabled: true, maxMessagesCount: 100, maxAwaitDurationMs: 40}
scopes: [app1, app2]
---
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata: {name: order-sub-v1}
spec: {pubsubname: pubsub, topic: orders, route: /orders}
scopes: [app1]
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: myresiliency}
scopes: [app1]
spec:
  policies:
    timeouts: {general: 5s, important: 60s}
    retries:
      retryForever: {policy: exponential, maxInterval: 15s, maxRetries: -1}
      fast:
        policy: constant
        duration: 500ms
        maxRetries: 10
        matching: {httpStatusCodes: "429,500-599", gRPCStatusCodes: "1-4,8-11,13,14"}
    circuitBreakers:
      simpleCB: {maxRequests: 1, interval: 8s, timeout: 45s, trip: consecutiveFailures > 8}
  targets:
    apps:
      appB: {timeout: general, retry: fast, circuitBreaker: simpleCB, circuitBreakerCacheSize: 100}
    actors:
      myActorType: {timeout: general, retry: fast, circuitBreaker: simpleCB, circuitBreakerScope: both}
    components:
      statestore: {outbound: {timeout: general, retry: fast, circuitBreaker: simpleCB}}
      pubsub: {outbound: {retry: fast}, inbound: {timeout: general, retry: retryForever}}
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: daprConfig}
spec:
  tracing:
    samplingRate: "1"
    stdout: true
    zipkin: {endpointAddress: "http://zipkin.default.svc.cluster.local:9411/api/v2/spans"}
    otel: {endpointAddress: "otel-collector:4317", protocol: grpc, isSecure: false}
  metrics:
    enabled: true
    recordErrorCodes: true
    http: {increasedCardinality: false, pathMatching: ["/orders/{id}"]}
    rules:
    - name: dapr_runtime_service_invocation_req_sent_total
      labels:
      - name: method
        regex: {"orders/": "orders/.+"}
    latencyDistributionBuckets: [1, 2, 5, 10, 50, 100]
  mtls: {enabled: true, workloadCertTTL: 24h, allowedClockSkew: 15m}
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: app1
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - {name: /op1, httpVerb: [POST, GET], action: deny}
      - {name: "/op2/*", httpVerb: ["*"], action: allow}
  httpPipeline:
    handlers: [{name: oauth2, type: middleware.http.oauth2}]
  appHttpPipeline:
    handlers: [{name: ratelimit, type: middleware.http.ratelimit}]
  features: [{name: SchedulerReminders, enabled: true}, {name: HotReload, enabled: true}]
  api:
    allowed: [{name: state, version: v1.0, protocol: http}]
    denied: [{name: invoke, version: v1, protocol: grpc}]
  secrets:
    scopes: [{storeName: kubernetes, defaultAccess: deny, allowedSecrets: [redis-password]}]
  nameResolution:
    component: consul
    version: v1
    configuration: {selfRegister: true, client: {address: "127.0.0.1:8500"}}
  components: {deny: [bindings.smtp, secretstores.local.file/v1]}
  logging: {apiLogging: {enabled: true, obfuscateURLs: false, omitHealthChecks: true}}
  workflow:
    maxConcurrentWorkflowInvocations: 100
    maxConcurrentActivityInvocations: 100
    stateRetentionPolicy: {anyTerminal: 24h}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: my-backend}
spec:
  baseUrl: https://api.example.com
  headers:
  - name: Authorization
    secretKeyRef: {name: s, key: token}
  - {name: X-Static, value: v}
  clientTLS:
    rootCA: {secretKeyRef: {name: ca, key: ca.crt}}
    certificate: {secretKeyRef: {name: client, key: tls.crt}}
    privateKey: {secretKeyRef: {name: client, key: tls.key}}
    renegotiation: RenegotiateOnceAsClient
scopes: [app1]
auth: {secretStore: my-secrets}
"""

MALFORMED = [
    (
        "Component without a type",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {version: v1}",
        "'type' is a required property",
    ),
    (
        "metadata as a map",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.redis, version: v1, metadata: {redisHost: x}}",
        "is not of type 'array'",
    ),
    (
        "misspelt field",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.redis, version: v1, ignoreError: true}",
        "'ignoreError' was unexpected",
    ),
    (
        "scopes as a string",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\nspec: {type: state.redis, version: v1}\nscopes: app1",
        "is not of type 'array'",
    ),
    (
        "Subscription without a topic",
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: s}\nspec: {pubsubname: p, routes: {default: /x}}",
        "'topic' is a required property",
    ),
    (
        "a rule without a path",
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: s}\nspec: {pubsubname: p, topic: t, routes: {rules: [{match: 'true'}]}}",
        "'path' is a required property",
    ),
    (
        "an unknown retry policy",
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: r}\nspec: {policies: {retries: {x: {policy: linear}}}}",
        "'linear' is not one of",
    ),
    (
        "an access action",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec: {accessControl: {defaultAction: maybe}}",
        "'maybe' is not one of",
    ),
    (
        "mtls.enabled as text",
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec: {mtls: {enabled: sure}}",
        "is not of type 'boolean'",
    ),
    (
        "an HTTPEndpoint without a baseUrl",
        "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata: {name: h}\nspec: {headers: []}",
        "'baseUrl' is a required property",
    ),
    (
        "a baseUrl without a scheme",
        "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata: {name: h}\nspec: {baseUrl: api.example.com}",
        "does not match",
    ),
    (
        "a kind no CRD serves",
        "apiVersion: dapr.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\nspec: {}",
        "no CRD serves",
    ),
]


def test_the_project_has_examples_of_several_kinds() -> None:
    kinds = {doc["kind"] for _, doc in PROJECT}
    assert {"Component", "Subscription", "Resiliency", "HTTPEndpoint"} <= kinds


@pytest.mark.parametrize(
    ("source", "resource"), PROJECT, ids=[f"{n}:{d['metadata']['name']}" for n, d in PROJECT]
)
def test_the_crds_accept_the_project_examples(source: str, resource: dict[str, Any]) -> None:
    assert crd_errors(resource) == []


DOCUMENTED = list(documents(DAPR_DOCUMENTED))


@pytest.mark.parametrize(
    "resource", DOCUMENTED, ids=[f"{d['kind']}-{d['apiVersion']}" for d in DOCUMENTED]
)
def test_the_crds_accept_dapr_documented_examples(resource: dict[str, Any]) -> None:
    assert crd_errors(resource) == []


@pytest.mark.parametrize(
    ("text", "said"), [(t, s) for _, t, s in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_the_crds_refuse_malformed_resources(text: str, said: str) -> None:
    errors = crd_errors(yaml.safe_load(text))
    assert any(said in e for e in errors), errors


def test_the_crd_schemas_are_structural() -> None:
    schemas = crds()
    assert len(schemas) == 6  # Subscription serves two versions
    for (kind, version), schema in schemas.items():
        assert structural_problems(schema) == [], (kind, version)


def test_the_crd_files_are_what_helm_installs() -> None:
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == [
        "components.yaml",
        "configurations.yaml",
        "httpendpoints.yaml",
        "resiliencies.yaml",
        "subscriptions.yaml",
    ]
