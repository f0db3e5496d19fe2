from collections.abc import Callable
from datetime import timedelta

import pytest

from tandem.resources import Component, MetadataItem, ResourceError, ResourceSet, SecretKeyRef

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]

# The state store `dapr init` writes to ~/.dapr/components/statestore.yaml.
REDIS_STATESTORE = """
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata:
      name: statestore
    spec:
      type: state.redis
      version: v1
      metadata:
      - name: redisHost
        value: localhost:6379
      - name: redisPassword
        value: ""
      - name: actorStateStore
        value: "true"
"""

REDIS_PUBSUB_WITH_SECRET = """
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata:
      name: orderpubsub
      namespace: default
    spec:
      type: pubsub.redis
      version: v1
      initTimeout: 1m30s
      ignoreErrors: true
      metadata:
      - name: redisHost
        value: redis-master.default.svc.cluster.local:6379
      - name: redisPassword
        secretKeyRef:
          name: redis
          key: redis-password
      - name: consumerID
        value: "{appID}"
      - name: concurrency
        value: 10
      - name: enableTLS
        value: false
    auth:
      secretStore: kubernetes
    scopes:
    - app1
    - checkout
"""

CRON_BINDING = """
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata:
      name: scheduled
    spec:
      type: bindings.cron
      version: v1
      metadata:
      - name: schedule
        value: "@every 15m"
      - name: direction
        value: input
"""

OAUTH_MIDDLEWARE = """
    apiVersion: dapr.io/v1alpha1
    kind: Component
    metadata:
      name: oauth2
    spec:
      type: middleware.http.oauth2
      version: v1
      metadata:
      - name: clientId
        value: my-client
      - name: scopes
        value: https://www.googleapis.com/auth/userinfo.email
      - name: redirectURL
      - name: claims
        value: {team: payments, tier: 1}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            REDIS_STATESTORE,
            Component(
                name="statestore",
                type="state.redis",
                metadata=(
                    MetadataItem("redisHost", "localhost:6379"),
                    MetadataItem("redisPassword", ""),
                    MetadataItem("actorStateStore", "true"),
                ),
            ),
            id="dapr-init-statestore",
        ),
        pytest.param(
            REDIS_PUBSUB_WITH_SECRET,
            Component(
                name="orderpubsub",
                namespace="default",
                type="pubsub.redis",
                init_timeout=timedelta(minutes=1, seconds=30),
                ignore_errors=True,
                metadata=(
                    MetadataItem("redisHost", "redis-master.default.svc.cluster.local:6379"),
                    MetadataItem(
                        "redisPassword", secret_key_ref=SecretKeyRef("redis", "redis-password")
                    ),
                    MetadataItem("consumerID", "{appID}"),
                    MetadataItem("concurrency", "10"),
                    MetadataItem("enableTLS", "false"),
                ),
                secret_store="kubernetes",
                scopes=("app1", "checkout"),
            ),
            id="pubsub-with-secret-auth-scopes",
        ),
        pytest.param(
            CRON_BINDING,
            Component(
                name="scheduled",
                type="bindings.cron",
                metadata=(
                    MetadataItem("schedule", "@every 15m"),
                    MetadataItem("direction", "input"),
                ),
            ),
            id="cron-binding",
        ),
        pytest.param(
            OAUTH_MIDDLEWARE,
            Component(
                name="oauth2",
                type="middleware.http.oauth2",
                metadata=(
                    MetadataItem("clientId", "my-client"),
                    MetadataItem("scopes", "https://www.googleapis.com/auth/userinfo.email"),
                    MetadataItem("redirectURL", ""),
                    MetadataItem("claims", '{"team":"payments","tier":1}'),
                ),
            ),
            id="middleware-with-empty-and-structured-values",
        ),
    ],
)
def test_valid_component_loads_as_model(load: Load, text: str, expected: Component) -> None:
    (component,) = load(text).components
    assert component == expected


def test_component_remembers_its_source_file(load: Load, tmp_path) -> None:
    (component,) = load(REDIS_STATESTORE, name="statestore.yaml").components
    assert component.source == str(tmp_path / "statestore.yaml")


def test_component_block_is_first_segment_of_type(load: Load) -> None:
    (store,) = load(REDIS_STATESTORE).components
    (middleware,) = load(OAUTH_MIDDLEWARE).components
    assert store.block == "state"
    assert middleware.block == "middleware"


def test_component_meta_lookup_ignores_case(load: Load) -> None:
    (component,) = load(REDIS_STATESTORE).components
    assert component.meta("REDISHOST") == "localhost:6379"
    assert component.meta("actorstatestore") == "true"
    assert component.meta("keyPrefix") is None
    assert component.meta("keyPrefix", "appid") == "appid"


def test_secret_ref_items_are_not_plain_metadata(load: Load) -> None:
    (component,) = load(REDIS_PUBSUB_WITH_SECRET).components
    assert "redisPassword" not in component.plain_metadata()
    assert component.plain_metadata()["consumerID"] == "{appID}"
    assert component.meta("redisPassword") is None
    assert [item.name for item in component.secret_refs()] == ["redisPassword"]


def test_secret_key_ref_without_key_uses_secret_name(load: Load) -> None:
    (component,) = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: store}
        spec:
          type: state.postgresql
          metadata:
          - name: connectionString
            secretKeyRef: {name: PG_CONN}
        """
    ).components
    assert component.metadata[0].secret_key_ref == SecretKeyRef("PG_CONN", "PG_CONN")


def test_component_is_scoped_for_listed_apps_only(load: Load) -> None:
    (component,) = load(REDIS_PUBSUB_WITH_SECRET).components
    assert component.is_scoped_for("checkout")
    assert not component.is_scoped_for("orders")


def test_component_without_scopes_is_for_every_app(load: Load) -> None:
    (component,) = load(REDIS_STATESTORE).components
    assert component.is_scoped_for("anything")


def test_component_version_defaults_to_v1_and_init_timeout_to_5s(load: Load) -> None:
    (component,) = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: store}
        spec: {type: state.in-memory}
        """
    ).components
    assert component.version == "v1"
    assert component.init_timeout == timedelta(seconds=5)
    assert component.metadata == ()


def _component(spec: str, meta: str = "metadata: {name: store}", extra: str = "") -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n" + meta + "\nspec:\n" + spec + "\n" + extra
    )


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        pytest.param(
            _component("  type: state.redis", meta="metadata: {namespace: default}"),
            "metadata.name",
            "is required",
            id="missing-name",
        ),
        pytest.param(
            _component("  type: state.redis", meta="metadata: {name: 'my store'}"),
            "metadata.name",
            "must not contain whitespace",
            id="name-with-space",
        ),
        pytest.param(
            _component("  type: state.redis", meta="metadata: [statestore]"),
            "metadata",
            "expected a mapping, got a list",
            id="metadata-not-mapping",
        ),
        pytest.param(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\n",
            "spec",
            "is required",
            id="missing-spec",
        ),
        pytest.param(_component("  version: v1"), "spec.type", "is required", id="missing-type"),
        pytest.param(
            _component("  type: redis"), "spec.type", "<block>.<implementation>", id="type-no-dot"
        ),
        pytest.param(
            _component("  type: storage.redis"),
            "spec.type",
            "unknown building block 'storage'",
            id="type-unknown-block",
        ),
        pytest.param(
            _component("  type: 42"),
            "spec.type",
            "expected a string, got integer 42",
            id="type-int",
        ),
        pytest.param(
            _component("  type: state.redis\n  version: 1"),
            "spec.version",
            "(quote it)",
            id="version-unquoted-number",
        ),
        pytest.param(
            _component("  type: state.redis\n  initTimeout: 5 seconds"),
            "spec.initTimeout",
            "invalid duration '5 seconds'",
            id="bad-init-timeout",
        ),
        pytest.param(
            _component("  type: state.redis\n  initTimeout: 30"),
            "spec.initTimeout",
            "expected a duration string",
            id="init-timeout-number",
        ),
        pytest.param(
            _component("  type: state.redis\n  initTimeout: -5s"),
            "spec.initTimeout",
            "must not be negative",
            id="negative-init-timeout",
        ),
        pytest.param(
            _component("  type: state.redis\n  ignoreErrors: 'false'"),
            "spec.ignoreErrors",
            "expected true or false, got string 'false'",
            id="ignore-errors-string",
        ),
        pytest.param(
            _component("  type: state.redis\n  metadata: {redisHost: localhost}"),
            "spec.metadata",
            "expected a list, got a mapping",
            id="metadata-as-map",
        ),
        pytest.param(
            _component("  type: state.redis\n  metadata:\n  - name: a\n    value: x\n  - value: y"),
            "spec.metadata[1].name",
            "is required",
            id="item-without-name",
        ),
        pytest.param(
            _component(
                "  type: state.redis\n  metadata:\n  - name: redisHost\n    value: a\n"
                "  - name: x\n    value: b\n  - name: RedisHost\n    value: c"
            ),
            "spec.metadata[2].name",
            "duplicate metadata item 'RedisHost' (first defined at spec.metadata[0])",
            id="duplicate-item-name",
        ),
        pytest.param(
            _component(
                "  type: state.redis\n  metadata:\n  - name: p\n    value: a\n"
                "    secretKeyRef: {name: s, key: k}"
            ),
            "spec.metadata[0]",
            "either value or secretKeyRef, not both",
            id="value-and-secret",
        ),
        pytest.param(
            _component("  type: state.redis\n  metadata:\n  - name: p\n    secretKeyRef: {key: k}"),
            "spec.metadata[0].secretKeyRef.name",
            "is required",
            id="secret-ref-without-name",
        ),
        pytest.param(
            _component("  type: state.redis\n  metadata:\n  - name: p\n    secretKeyRef: s"),
            "spec.metadata[0].secretKeyRef",
            "expected a mapping, got string 's'",
            id="secret-ref-not-mapping",
        ),
        pytest.param(
            _component("  type: state.redis", extra="auth: {secretStore: [a]}"),
            "auth.secretStore",
            "expected a string, got a list",
            id="secret-store-list",
        ),
        pytest.param(
            _component("  type: state.redis", extra="scopes: app1"),
            "scopes",
            "expected a list, got string 'app1'",
            id="scopes-string",
        ),
        pytest.param(
            _component("  type: state.redis", extra="scopes: [app1, 7]"),
            "scopes[1]",
            "expected a string, got integer 7",
            id="scope-not-string",
        ),
    ],
)
def test_invalid_component_error_names_file_field_and_reason(
    expect_error: ExpectError, text: str, field: str, reason: str
) -> None:
    expect_error(text, field, reason)


def test_component_without_name_names_file_and_field(expect_error: ExpectError) -> None:
    err = expect_error(
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          labels: {team: payments}
        spec:
          type: state.redis
        """,
        "metadata.name",
        "is required",
        name="statestore.yaml",
    )
    assert str(err).endswith("statestore.yaml:4: metadata.name: is required")


def test_duplicate_metadata_error_points_at_the_second_line(expect_error: ExpectError) -> None:
    expect_error(
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: store}
        spec:
          type: state.redis
          metadata:
          - name: redisHost
            value: a
          - name: redisHost
            value: b
        """,
        "spec.metadata[1].name",
        "duplicate metadata item",
        line=9,
    )


def test_unquoted_dates_and_yaml_booleans_stay_as_dapr_renders_them(load: Load) -> None:
    (component,) = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: store}
        spec:
          type: bindings.cron
          metadata:
          - {name: since, value: 2024-01-01}
          - {name: enabled, value: yes}
          - {name: ratio, value: 1.50}
          - {name: whole, value: 2.0}
          - {name: empty, value: }
        """
    ).components
    assert component.plain_metadata() == {
        "since": "2024-01-01",
        "enabled": "true",
        "ratio": "1.5",
        "whole": "2",
        "empty": "",
    }
