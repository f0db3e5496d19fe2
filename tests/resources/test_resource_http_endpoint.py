from collections.abc import Callable

import pytest

from tandem.resources import (
    ClientTLS,
    HTTPEndpoint,
    MetadataItem,
    ResourceError,
    ResourceSet,
    SecretKeyRef,
    TLSDocument,
)

Load = Callable[..., ResourceSet]
ExpectError = Callable[..., ResourceError]

EXTERNAL_API = """
    apiVersion: dapr.io/v1alpha1
    kind: HTTPEndpoint
    metadata:
      name: external-orders
    spec:
      baseUrl: https://orders.example.com:8443/api
      headers:
      - name: Authorization
        secretKeyRef:
          name: orders-token
          key: token
      - name: X-Tenant
        value: acme
      clientTLS:
        rootCA:
          secretKeyRef: {name: orders-tls, key: ca.crt}
        certificate:
          secretKeyRef: {name: orders-tls, key: tls.crt}
        privateKey:
          secretKeyRef: {name: orders-tls, key: tls.key}
        renegotiation: RenegotiateOnceAsClient
    auth:
      secretStore: vault
    scopes:
    - checkout
"""


def test_http_endpoint_with_headers_and_client_tls_loads(load: Load) -> None:
    (endpoint,) = load(EXTERNAL_API, app_id="checkout").http_endpoints
    assert endpoint == HTTPEndpoint(
        name="external-orders",
        base_url="https://orders.example.com:8443/api",
        headers=(
            MetadataItem("Authorization", secret_key_ref=SecretKeyRef("orders-token", "token")),
            MetadataItem("X-Tenant", "acme"),
        ),
        client_tls=ClientTLS(
            root_ca=TLSDocument(secret_key_ref=SecretKeyRef("orders-tls", "ca.crt")),
            certificate=TLSDocument(secret_key_ref=SecretKeyRef("orders-tls", "tls.crt")),
            private_key=TLSDocument(secret_key_ref=SecretKeyRef("orders-tls", "tls.key")),
            renegotiation="RenegotiateOnceAsClient",
        ),
        secret_store="vault",
        scopes=("checkout",),
    )


def test_minimal_http_endpoint_needs_only_a_base_url(load: Load) -> None:
    (endpoint,) = load(
        """
        apiVersion: dapr.io/v1alpha1
        kind: HTTPEndpoint
        metadata: {name: local}
        spec: {baseUrl: "http://localhost:8080"}
        """
    ).http_endpoints
    assert endpoint == HTTPEndpoint(name="local", base_url="http://localhost:8080")


def test_http_endpoint_scoped_to_other_apps_is_dropped(load: Load) -> None:
    assert load(EXTERNAL_API, app_id="orders").http_endpoints == ()


def _endpoint(spec: str) -> str:
    return "apiVersion: dapr.io/v1alpha1\nkind: HTTPEndpoint\nmetadata: {name: e}\nspec:\n" + spec


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        pytest.param(_endpoint("  headers: []\n"), "spec.baseUrl", "is required", id="no-url"),
        pytest.param(
            _endpoint("  baseUrl: ftp://files.example.com\n"),
            "spec.baseUrl",
            "'ftp://files.example.com' must be an absolute http:// or https:// URL",
            id="ftp-url",
        ),
        pytest.param(
            _endpoint("  baseUrl: orders.example.com\n"),
            "spec.baseUrl",
            "must be an absolute http:// or https:// URL",
            id="url-without-scheme",
        ),
        pytest.param(
            _endpoint(
                "  baseUrl: http://a\n  headers:\n  - name: X-A\n    value: 1\n  - name: x-a\n"
            ),
            "spec.headers[1].name",
            "duplicate header 'x-a'",
            id="duplicate-header",
        ),
        pytest.param(
            _endpoint("  baseUrl: http://a\n  clientTLS: {renegotiation: always}\n"),
            "spec.clientTLS.renegotiation",
            "must be one of RenegotiateNever, RenegotiateOnceAsClient, RenegotiateFreelyAsClient",
            id="bad-renegotiation",
        ),
        pytest.param(
            _endpoint("  baseUrl: http://a\n  clientTLS: {rootCA: {secretKeyRef: {key: ca}}}\n"),
            "spec.clientTLS.rootCA.secretKeyRef.name",
            "is required",
            id="tls-secret-without-name",
        ),
    ],
)
def test_invalid_http_endpoint_error_names_file_field_and_reason(
    expect_error: ExpectError, text: str, field: str, reason: str
) -> None:
    expect_error(text, field, reason)
