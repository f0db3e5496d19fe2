"""HTTPEndpoint secretKeyRef: resolved by `tandem run` from the app's secret stores,
carried in node metadata to the control plane without ever showing in a repr or error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.blocks.secrets.endpoints import endpoint_secrets
from tandem.resources import ResourceError
from tandem.xds.ir import Sidecar
from tandem.xds.translate import http_endpoints

TOKEN = "Bearer tok-51f0-secret"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
RESOURCES = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {{name: files}}
spec:
  type: secretstores.local.file
  version: v1
  metadata:
  - {{name: secretsFile, value: "{file}"}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {{name: backend}}
spec:
  baseUrl: https://backend.example.com
  headers:
  - name: Authorization
    secretKeyRef: {{name: {name}, key: {name}}}
  clientTLS:
    rootCA:
      secretKeyRef: {{name: ca, key: ca}}
{auth}
"""


def folder(tmp_path: Path, *, name: str = "token", auth: bool = True) -> Path:
    (tmp_path / "s.json").write_text(json.dumps({"token": TOKEN, "ca": PEM}))
    res = tmp_path / "res"
    res.mkdir(exist_ok=True)
    text = RESOURCES.format(
        file=tmp_path / "s.json", name=name, auth="auth: {secretStore: files}" if auth else ""
    )
    (res / "endpoints.yaml").write_text(text)
    return res


def resolve(res: Path, tmp_path: Path) -> dict[str, dict[str, str]]:
    return endpoint_secrets([res], app_id="app", namespace=None, home=tmp_path)


def test_headers_and_tls_documents_are_resolved(tmp_path: Path) -> None:
    assert resolve(folder(tmp_path), tmp_path) == {
        "backend": {"header:Authorization": TOKEN, "clientTLS.rootCA": PEM}
    }


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"auth": False}, "spec.headers[0].secretKeyRef", "has no auth.secretStore"),
        ({"name": "gone"}, "spec.headers[0].secretKeyRef", "secret 'gone' not found"),
    ],
)
def test_an_unresolvable_reference_is_refused_by_file_field_reason(
    tmp_path: Path, kwargs: dict, field: str, reason: str
) -> None:
    with pytest.raises(ResourceError) as err:
        resolve(folder(tmp_path, **kwargs), tmp_path)
    assert err.value.file.endswith("endpoints.yaml")
    assert err.value.field == field
    assert reason in err.value.reason
    assert TOKEN not in str(err.value)


def test_the_control_plane_uses_the_values_and_never_shows_them(tmp_path: Path) -> None:
    res = folder(tmp_path)
    from tandem.resources.loader import invocation_files

    metadata = {
        "app_id": "app",
        "http_port": 3500,
        "grpc_port": 50001,
        "internal_port": 50002,
        "resources": [{"file": f, "yaml": t} for f, t in invocation_files([res])],
        "http_endpoint_secrets": resolve(res, tmp_path),
    }
    sidecar = Sidecar.from_node_metadata("app~1", metadata)

    assert TOKEN not in repr(sidecar)
    assert Sidecar.from_node_metadata("app~1", sidecar.to_node_metadata()) == sidecar
    (cluster,) = http_endpoints.clusters(sidecar)
    assert PEM in str(cluster.transport_socket.typed_config.value, "latin-1")
    route = http_endpoints.routes(sidecar, {})[0]
    assert {(h.header.key, h.header.value) for h in route.request_headers_to_add} >= {
        ("Authorization", TOKEN)
    }
    bad = {**metadata, "http_endpoint_secrets": {"backend": {"header:X": 5}}}
    with pytest.raises(ValueError) as err:
        Sidecar.from_node_metadata("app~1", bad)
    assert "http_endpoint_secrets must map" in str(err.value)
