"""The sidecar injector served by `tandem injector` over real TLS, fed AdmissionReviews.

Each patch is applied with a JSON-patch library and the resulting Pod is checked against
the Kubernetes schema of a recent release (kubernetes-validate, strict: unknown fields
fail); the injected Envoy bootstrap is checked by Envoy itself.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from servers import free_port, wait_until
from tandem.envoy import envoy_binary

KUBERNETES = kubernetes_validate.latest_version()
IMAGE = "registry.example/tandem:0.1.0"
CONTROL_PLANE = "tandem-controlplane.tandem-system.svc:50005"


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 (the API server pins it by caBundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tandem-injector")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Injector:
    def __init__(self, url: str, ca: Path) -> None:
        self.url = url
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=10.0)

    def post(self, body: object) -> httpx.Response:
        return self.client.post(f"{self.url}/mutate", json=body)

    def review(
        self, pod: dict[str, Any], namespace: str = "shop", operation: str = "CREATE"
    ) -> dict[str, Any]:
        uid = str(uuid.uuid4())
        request = {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "object": pod,
        }
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        resp = self.post(body)
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == uid
        assert answer["response"]["allowed"] is True
        return dict(answer["response"])


@pytest.fixture(scope="module")
def injector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Injector]:
    directory = tmp_path_factory.mktemp("injector")
    cert, key = _certificate(directory)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tandem.cli.main",
            "injector",
            "--address",
            f"127.0.0.1:{port}",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--sidecar-image",
            IMAGE,
            "--control-plane-address",
            CONTROL_PLANE,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    client = Injector(f"https://127.0.0.1:{port}", cert)

    def healthy() -> bool:
        try:
            return client.client.get(f"{client.url}/healthz").status_code == 204
        except httpx.TransportError:
            return False

    try:
        wait_until(
            healthy, deadline_s=30, what="tandem injector", alive=lambda: proc.poll() is None
        )
        yield client
    finally:
        client.client.close()
        proc.terminate()
        proc.wait(timeout=10)


def _pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "orders-7d9f8c6b5-",
            "namespace": "shop",
            "labels": {"app": "orders"},
            "annotations": annotations or {},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "orders-7d9f8c6b5",
                    "uid": "4b1c8a52-3a0e-4a4f-9f43-1f0f3c1d2e11",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "orders",
                    "image": "registry.example/orders:1.0",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "LOG_FORMAT", "value": "json"}],
                }
            ],
            **spec,
        },
    }


DAPR = {
    "dapr.io/enabled": "true",
    "dapr.io/app-id": "orders",
    "dapr.io/app-port": "8080",
    "dapr.io/log-level": "debug",
    "dapr.io/sidecar-cpu-request": "100m",
    "dapr.io/sidecar-memory-limit": "256Mi",
    "dapr.io/api-token-secret": "dapr-api-token",
    "dapr.io/env": "GOMAXPROCS=2,OTHER=x",
}


def _patched(pod: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    out = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(pod))
    # Strict: a field the API server would drop or refuse fails here.
    kubernetes_validate.validate(out, KUBERNETES, strict=True)
    return dict(out)


def _by_name(containers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in containers}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_an_annotated_pod_gets_the_runtime_and_envoy_as_native_sidecars(
    injector: Injector,
) -> None:
    pod = _pod(DAPR, initContainers=[{"name": "migrate", "image": "registry.example/m:1"}])
    response = injector.review(pod)
    out = _patched(pod, response)
    spec = out["spec"]

    # The enrolment container (runs once), then the native sidecars, runtime before Envoy;
    # the app's own init container comes after them (so it can use Dapr), the app untouched.
    assert [c["name"] for c in spec["initContainers"]] == [
        "tandem-enrol",
        "tandem-resources",
        "tandem-runtime",
        "tandem-envoy",
        "migrate",
    ]
    enrol, resources, runtime, envoy, migrate = spec["initContainers"]
    assert runtime["restartPolicy"] == envoy["restartPolicy"] == "Always"
    # The namespace's dapr.io objects, synced into the runtime's resources folder.
    assert resources["restartPolicy"] == "Always"
    assert resources["command"] == ["python", "-m", "tandem.k8s.resources_sync"]
    assert runtime["args"][runtime["args"].index("--resources-path") + 1] == (
        "/var/run/tandem/resources"
    )
    assert "restartPolicy" not in migrate
    assert "restartPolicy" not in enrol
    assert enrol["command"] == ["python", "-m", "tandem.k8s.enrol"]
    assert enrol["args"][enrol["args"].index("--token-file") + 1] == (
        "/var/run/secrets/tandem.io/serviceaccount/token"
    )
    assert {
        "name": "tandem-token",
        "mountPath": "/var/run/secrets/tandem.io/serviceaccount",
        "readOnly": True,
    } in enrol["volumeMounts"]
    # Envoy's bootstrap starts from the enrolment's fragment (csr and credential).
    assert envoy["args"][envoy["args"].index("--config-path") + 1] == (
        "/var/run/tandem/enrolment.json"
    )
    assert [c["name"] for c in spec["containers"]] == ["orders"]
    assert runtime["image"] == envoy["image"] == IMAGE

    # The same processes `tandem run` starts, with its flags.
    assert runtime["command"] == ["python", "-m", "tandem.ext_proc"]
    args = runtime["args"]
    assert args[args.index("--app-id") + 1] == "orders"
    assert args[args.index("--app-port") + 1] == "8080"
    assert args[args.index("--namespace") + 1] == "shop"
    assert args[args.index("--log-level") + 1] == "debug"
    assert args[args.index("--control-plane") + 1] == CONTROL_PLANE
    assert args[args.index("--node-id") + 1] == "$(POD_NAME)"
    assert envoy["command"] == ["envoy"]
    assert {"--disable-hot-restart", "--drain-strategy"} <= set(envoy["args"])
    bootstrap = json.loads(envoy["args"][envoy["args"].index("--config-yaml") + 1])
    metadata = bootstrap["node"]["metadata"]
    assert metadata["app_id"] == "orders" and metadata["namespace"] == "shop"
    assert metadata["internal_address"] == "$(POD_IP)"
    assert metadata["dapr_api_token"] == "$(DAPR_API_TOKEN)"
    [xds] = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds_cluster"]
    assert xds["type"] == "STRICT_DNS"  # the control plane's Service name
    assert {p["containerPort"] for p in envoy["ports"]} == {3500, 50001, 50002, 9090}

    # Probes: the app waits for the sidecar's outbound health; readiness is full health.
    for container in (runtime, envoy):
        assert container["startupProbe"]["exec"]["command"][0] == "python"
    assert envoy["startupProbe"]["exec"]["command"][-1] == "/v1.0/healthz/outbound"
    assert envoy["livenessProbe"]["exec"]["command"][-1] == "/v1.0/healthz/outbound"
    assert envoy["readinessProbe"]["exec"]["command"][-1] == "/v1.0/healthz"
    assert envoy["readinessProbe"]["periodSeconds"] == 6  # Dapr's default

    # Hardening.
    for container in (runtime, envoy):
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"] == {
            "requests": {"cpu": "100m"},
            "limits": {"memory": "256Mi"},
        }

    # The app learns its sidecar's ports; its own env is kept.
    app_env = _env(spec["containers"][0])
    assert app_env["DAPR_HTTP_PORT"] == "3500"
    assert app_env["DAPR_GRPC_PORT"] == "50001"
    assert app_env["APP_ID"] == "orders"
    assert app_env["LOG_FORMAT"] == "json"
    token = {"secretKeyRef": {"name": "dapr-api-token", "key": "token"}}
    assert app_env["DAPR_API_TOKEN"] == token
    assert _env(runtime)["DAPR_API_TOKEN"] == _env(envoy)["DAPR_API_TOKEN"] == token
    assert _env(runtime)["GOMAXPROCS"] == "2"

    # A projected, audience-bound ServiceAccount token, read-only in both sidecars.
    volumes = _by_name(spec["volumes"])
    source = volumes["tandem-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert source["audience"] == "tandem.io/controlplane"
    assert source["expirationSeconds"] == 3600
    for container in (runtime, envoy):
        mounts = _by_name(container["volumeMounts"])
        assert mounts["tandem-token"]["readOnly"] is True
    assert out["metadata"]["labels"] == {
        "app": "orders",
        "dapr.io/sidecar-injected": "true",
        "dapr.io/app-id": "orders",
    }
    assert "warnings" not in response


def test_native_sidecars_can_be_turned_off_as_in_dapr(injector: Injector) -> None:
    pod = _pod({**DAPR, "dapr.io/enable-native-sidecar": "false"})
    out = _patched(pod, injector.review(pod))

    assert [c["name"] for c in out["spec"]["initContainers"]] == ["tandem-enrol"]
    assert [c["name"] for c in out["spec"]["containers"]] == [
        "orders",
        "tandem-resources",
        "tandem-runtime",
        "tandem-envoy",
    ]
    assert all("restartPolicy" not in c for c in out["spec"]["containers"])


def test_body_size_annotations(injector: Injector) -> None:
    for extra, mib in (
        ({"dapr.io/max-body-size": "16Mi"}, 16),
        ({"dapr.io/http-max-request-size": "8"}, 8),
    ):
        pod = _pod({**DAPR, **extra})
        runtime = _patched(pod, injector.review(pod))["spec"]["initContainers"][2]["args"]
        assert runtime[runtime.index("--max-body-bytes") + 1] == str(mib << 20)


def test_metrics_and_the_configuration_name(injector: Injector) -> None:
    pod = _pod({**DAPR, "dapr.io/enable-metrics": "false", "dapr.io/config": "tracing"})
    response = injector.review(pod)
    out = _patched(pod, response)

    envoy = out["spec"]["initContainers"][3]
    assert {p["name"] for p in envoy["ports"]} == {"dapr-http", "dapr-grpc", "dapr-internal"}
    assert "DAPR_METRICS_PORT" not in _env(out["spec"]["containers"][0])
    bootstrap = json.loads(envoy["args"][envoy["args"].index("--config-yaml") + 1])
    assert "metrics_port" not in bootstrap["node"]["metadata"]
    # Envoy's control plane applies the namespace's Configuration of that name
    # (test_k8s_configurations.py); the runtime reads the copy the resources container
    # writes, and says which Configuration is missing if there is none.
    assert bootstrap["node"]["metadata"]["configuration"] == "tracing"
    runtime = out["spec"]["initContainers"][2]["args"]
    config = runtime[runtime.index("--config") + 1]
    assert config == "/var/run/tandem/resources/configuration-tracing.yaml"
    assert runtime[runtime.index("--resources-path") + 1] == str(Path(config).parent)
    assert runtime[runtime.index("--config-name") + 1] == "tracing"
    assert "warnings" not in response


def test_the_app_id_defaults_to_the_deployment_name(injector: Injector) -> None:
    pod = _pod({"dapr.io/enabled": "true"})
    del pod["spec"]["containers"][0]["env"]
    del pod["metadata"]["labels"]
    out = _patched(pod, injector.review(pod))

    runtime = out["spec"]["initContainers"][2]
    assert runtime["args"][runtime["args"].index("--app-id") + 1] == "orders"
    assert "--app-port" not in runtime["args"]
    assert _env(out["spec"]["containers"][0])["APP_ID"] == "orders"


def test_a_pod_without_the_annotation_is_left_alone(injector: Injector) -> None:
    for pod_annotations in ({}, {"dapr.io/enabled": "false", "dapr.io/app-id": "orders"}):
        response = injector.review(_pod(pod_annotations))
        assert "patch" not in response and "warnings" not in response


def test_an_injected_pod_is_left_alone(injector: Injector) -> None:
    pod = _pod(DAPR)
    once = _patched(pod, injector.review(pod))

    response = injector.review(once)

    assert "patch" not in response and "warnings" not in response


def test_only_a_new_pod_is_injected(injector: Injector) -> None:
    response = injector.review(_pod(DAPR), operation="UPDATE")

    assert "patch" not in response and "warnings" not in response


def test_ignored_annotations_are_injected_with_a_note(injector: Injector) -> None:
    pod = _pod({**DAPR, "dapr.io/placement-host-address": "placement:50005"})
    response = injector.review(pod)

    _patched(pod, response)
    assert len(response["warnings"]) == 1
    assert "dapr.io/placement-host-address ignored" in response["warnings"][0]


@pytest.mark.parametrize(
    ("annotation", "value", "said"),
    [
        ("dapr.io/app-port", "http", "dapr.io/app-port: 'http' is not a whole number"),
        ("dapr.io/app-protocol", "websocket", "dapr.io/app-protocol: 'websocket' is not one of"),
        ("dapr.io/sidecar-cpu-limit", "lots", "dapr.io/sidecar-cpu-limit: 'lots' is not a Kube"),
        ("dapr.io/app-id", "Orders_Service", "dapr.io/app-id: 'Orders_Service' must be a DNS"),
        ("dapr.io/env", "NOEQUALS", "dapr.io/env: 'NOEQUALS' is not NAME=value"),
        ("dapr.io/enable-native-sidecar", "maybe", "'maybe' is not true or false"),
        ("dapr.io/app-porrt", "8080", "dapr.io/app-porrt: unknown annotation"),
        ("dapr.io/unix-domain-socket-path", "/tmp", "Unix sockets is not offered in pods"),
        ("dapr.io/volume-mounts", "nope:/data", "names volume 'nope', not in the pod"),
        ("dapr.io/config", "My Config", "dapr.io/config: 'My Config' is not a Configuration"),
        ("dapr.io/app-health-check-path", "healthz", "is not a path"),
        ("dapr.io/sidecar-seccomp-profile-type", "Localhost", "is not RuntimeDefault or"),
        ("dapr.io/max-body-size", "4.5Mi", "dapr.io/max-body-size: '4.5Mi' is not a size"),
    ],
)
def test_a_malformed_annotation_admits_the_pod_unchanged_with_a_warning(
    injector: Injector, annotation: str, value: str, said: str
) -> None:
    response = injector.review(_pod({**DAPR, annotation: value}))

    assert "patch" not in response
    [warning] = response["warnings"]
    assert warning.startswith("tandem: sidecar not injected: ")
    assert said in warning


def test_what_is_not_an_admission_review_gets_a_400(injector: Injector) -> None:
    assert injector.client.post(f"{injector.url}/mutate", content=b"{nope").status_code == 400
    assert injector.post({"kind": "Pod"}).status_code == 400
    review = {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}
    assert injector.post(review).status_code == 400
    # Still serving.
    assert "patch" in injector.review(_pod(DAPR))


def test_envoy_accepts_the_injected_bootstrap(injector: Injector, tmp_path: Path) -> None:
    pod = _pod({**DAPR, "dapr.io/enable-api-logging": "true", "dapr.io/app-max-concurrency": "4"})
    envoy = _patched(pod, injector.review(pod))["spec"]["initContainers"][3]
    text = envoy["args"][envoy["args"].index("--config-yaml") + 1]
    # What the kubelet does when the container starts.
    for name, value in (("POD_NAME", "orders-7d9f8c6b5-x2x9q"), ("POD_IP", "10.1.2.3")):
        text = text.replace(f"$({name})", value)
    text = text.replace("$(DAPR_API_TOKEN)", "s3cret")
    path = tmp_path / "bootstrap.json"
    path.write_text(text)

    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_injector_refuses_a_missing_certificate_or_a_bad_address(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    for args, said in (
        (
            [
                "--address",
                "127.0.0.1:1",
                "--tls-cert",
                str(tmp_path / "none"),
                "--tls-key",
                str(key),
            ],
            "no such file",
        ),
        (
            ["--address", "localhost", "--tls-cert", str(cert), "--tls-key", str(key)],
            "expected host:port",
        ),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "tandem.cli.main", "injector", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert said in result.stderr
