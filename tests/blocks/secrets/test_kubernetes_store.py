"""secretstores.kubernetes against a stand-in Kubernetes API server (offline: a small
HTTP server answering the two core/v1 Secret calls the store makes, in the API's JSON
shapes). What a real cluster adds (service-account auth, RBAC, TLS) is not exercised."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tandem.blocks.component_metadata import ComponentConfigError
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.secrets.store import SecretNotFoundError

SECRETS = {
    "team": {
        "db": {"username": "admin", "password": "k8s-pw"},
        "api": {"token": "t0k"},
    }
}


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        "type": "Opaque",
    }


class FakeApi(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = self.path.split("?")[0].strip("/").split("/")
        # api/v1/namespaces/<ns>/secrets[/<name>]
        namespace = parts[3] if len(parts) > 3 else ""
        found = SECRETS.get(namespace, {})
        if len(parts) == 5:
            items = [_secret(namespace, n, d) for n, d in found.items()]
            self._send(200, {"apiVersion": "v1", "kind": "SecretList", "metadata": {},
                             "items": items})  # fmt: skip
        elif len(parts) == 6 and parts[5] in found:
            self._send(200, _secret(namespace, parts[5], found[parts[5]]))
        else:
            status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "not found", "reason": "NotFound", "code": 404}  # fmt: skip
            self._send(404, status)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def kubeconfig(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig.yaml"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def store(tmp_path: Path, url: str):
    md = {"kubeconfigPath": str(kubeconfig(tmp_path, url)), "defaultNamespace": "team"}
    spec = ComponentSpec("kubernetes", "secretstores.kubernetes", metadata=md)
    return create_component(spec, ComponentContext(app_id="app", namespace="other"))


def test_a_secret_answers_every_key_decoded(tmp_path: Path, api_server: str) -> None:
    s = store(tmp_path, api_server)
    try:
        assert s.get("db", {}) == {"username": "admin", "password": "k8s-pw"}
        assert s.bulk({}) == {
            "db": {"username": "admin", "password": "k8s-pw"},
            "api": {"token": "t0k"},
        }
        with pytest.raises(SecretNotFoundError):
            s.get("absent", {})
        with pytest.raises(SecretNotFoundError):
            s.get("db", {"namespace": "elsewhere"})  # the request's namespace wins
    finally:
        s.close()


def test_no_kubernetes_configuration_is_refused(tmp_path: Path) -> None:
    spec = ComponentSpec(
        "kubernetes",
        "secretstores.kubernetes",
        metadata={"kubeconfigPath": str(tmp_path / "missing")},
    )
    with pytest.raises(ComponentConfigError, match="no Kubernetes configuration"):
        create_component(spec, ComponentContext(app_id="app"))


def test_in_kubernetes_mode_references_without_a_store_read_the_builtin_one(
    tmp_path: Path, api_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tandem.blocks.secrets.resolve import open_secret_stores
    from tandem.resources import load_resources

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path, api_server)))
    (tmp_path / "c.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: cache}\n"
        "spec:\n  type: state.in-memory\n  version: v1\n  metadata:\n"
        "  - name: password\n    secretKeyRef: {name: db, key: password}\n"
    )
    loaded = load_resources([tmp_path / "c.yaml"], app_id="app")
    ctx = ComponentContext(app_id="app", namespace="team")
    service, resolver = open_secret_stores(loaded.components, ctx, kubernetes_mode=True)
    try:
        assert resolver.spec(loaded.components[0]).metadata == {"password": "k8s-pw"}
        assert service.types == {"kubernetes": "secretstores.kubernetes"}
    finally:
        for s in service.stores.values():
            s.close()
