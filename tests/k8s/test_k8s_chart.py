"""charts/tandem linted and rendered by Helm's own library (helm-python-sdk bundles
libhelm: no helm binary), every rendered object checked against the Kubernetes schema."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from cryptography import x509
from k8s_schemas import CHART, KUBERNETES, documents, validate_k8s

from tandem.xds.identity import MtlsSettings

NAMESPACE = "tandem-system"
DIGEST = "sha256:" + "ab" * 32
CUSTOM: dict[str, Any] = {
    "image": {"repository": "registry.example/tandem", "digest": DIGEST, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry"}],
    "replicas": 2,
    "logLevel": "debug",
    "mtls": {"enabled": False, "workloadCertTTL": "1h", "allowedClockSkew": "1m"},
    "controlPlane": {"port": 15010, "resources": {"requests": {"cpu": "1"}}},
    "injector": {
        "sidecarImage": "registry.example/tandem-sidecar:0.1.0",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "excludeNamespaces": ["kube-system", "monitoring"],
        "tokenAudience": "mesh.example",
    },
    "podDisruptionBudget": {"maxUnavailable": "50%"},
    "podAnnotations": {"team": "platform"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "mesh"}],
    "priorityClassName": "system-cluster-critical",
}


def _render(values: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="tandem", namespace=NAMESPACE, is_install=True)
    objects = {}
    for text in manifests.values():
        for obj in documents(text):
            objects[(obj["kind"], obj["metadata"]["name"])] = obj
    return objects


@pytest.fixture(scope="module", params=["default", "custom"])
def rendered(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict[str, Any]]:
    return _render(None if request.param == "default" else CUSTOM)


@pytest.mark.parametrize("values", [None, CUSTOM], ids=["default", "custom"])
def test_the_chart_lints_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.33.0")

    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error (1 is a suggestion such as "icon is recommended").
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_rendered_object_is_valid_kubernetes(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    assert {kind for kind, _ in rendered} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
    }
    for obj in rendered.values():
        validate_k8s(obj)


def test_every_crd_is_valid_kubernetes() -> None:
    crds = helm.Chart.load(CHART).crds
    kinds = set()
    for entry in crds:
        for crd in documents(entry["data"]):
            validate_k8s(crd)
            assert crd["spec"]["group"] == "dapr.io"
            kinds.add(crd["spec"]["names"]["kind"])
    assert kinds == {"Component", "Configuration", "Resiliency", "Subscription", "HTTPEndpoint"}


def test_rbac_is_least_privilege(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    roles = [obj for (kind, _), obj in rendered.items() if kind in ("ClusterRole", "Role")]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
            assert not {"delete", "deletecollection", "escalate", "bind"} & set(rule["verbs"])
            if "patch" in rule["verbs"]:
                # Only the leader's label on its own pods, in the release's namespace.
                assert role["kind"] == "Role" and rule["resources"] == ["pods"], rule
    readme = (CHART / "README.md").read_text()
    for role in roles:
        for rule in role["rules"]:
            for resource in rule["resources"]:
                assert resource in readme, f"{resource} is not listed in the chart's README"


def test_the_webhook_trusts_the_certificate_the_injector_serves(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    secret = rendered[("Secret", "tandem-injector-tls")]
    [hook] = rendered[("MutatingWebhookConfiguration", "tandem-injector")]["webhooks"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))

    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    service = hook["clientConfig"]["service"]
    assert f"{service['name']}.{service['namespace']}.svc" in names.value.get_values_for_type(
        x509.DNSName
    )
    assert (service["path"], service["port"]) == ("/mutate", 443)
    assert hook["admissionReviewVersions"] == ["v1"] and hook["sideEffects"] == "None"
    excluded = hook["namespaceSelector"]["matchExpressions"][0]["values"]
    assert NAMESPACE in excluded and "kube-system" in excluded


@pytest.mark.parametrize("values", [None, CUSTOM], ids=["default", "custom"])
def test_the_control_plane_reads_the_mesh_configuration(
    values: dict[str, Any] | None, tmp_path: Path
) -> None:
    mesh = _render(values)[("ConfigMap", "tandem-mesh")]["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(mesh)

    settings = MtlsSettings.from_configuration(path)  # what `python -m tandem.xds --config` reads

    expected = (values or {}).get("mtls", {"enabled": True})
    assert settings.enabled is expected["enabled"]
    if values:
        assert settings.workload_cert_ttl.total_seconds() == 3600
        assert settings.allowed_clock_skew.total_seconds() == 60


def test_values_reach_the_objects() -> None:
    default, custom = _render(None), _render(CUSTOM)

    def deployment(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
        return objs[("Deployment", "tandem-controlplane")]

    def containers(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in deployment(objs)["spec"]["template"]["spec"]["containers"]}

    assert deployment(default)["spec"]["replicas"] == 2
    assert deployment(custom)["spec"]["replicas"] == 2
    assert containers(default)["controlplane"]["image"] == "ghcr.io/tandem-runtime/tandem:0.1.0"
    assert containers(custom)["controlplane"]["image"] == f"registry.example/tandem@{DIGEST}"
    injector = containers(custom)["injector"]["args"]
    assert injector[injector.index("--sidecar-image") + 1] == CUSTOM["injector"]["sidecarImage"]
    assert (
        injector[injector.index("--control-plane-address") + 1]
        == f"tandem-controlplane.{NAMESPACE}.svc:15010"
    )
    assert injector[injector.index("--token-audience") + 1] == "mesh.example"
    assert (
        injector[injector.index("--placement-address") + 1]
        == f"tandem-placement.{NAMESPACE}.svc:15010"
    )
    assert injector[injector.index("--log-level") + 1] == "debug"
    cp = containers(custom)["controlplane"]["args"]
    assert cp[cp.index("--port") + 1] == "15010"
    # In-cluster mode: CA in a Secret, enrolment by token, one leader by Lease.
    assert "--kubernetes" in cp
    assert cp[cp.index("--ca-secret") + 1] == "tandem-ca"
    assert cp[cp.index("--leader-lease") + 1] == "tandem-controlplane"
    placement = custom[("Service", "tandem-placement")]["spec"]
    assert placement["selector"]["tandem.io/controlplane-leader"] == "true"
    assert [p["port"] for p in placement["ports"]] == [15010]
    mesh = custom[("ConfigMap", "tandem-mesh")]["data"]["config.yaml"]
    assert next(documents(mesh))["spec"]["mtls"] == {
        "enabled": False,
        "workloadCertTTL": "1h",
        "allowedClockSkew": "1m",
    }
    assert (
        next(documents(default[("ConfigMap", "tandem-mesh")]["data"]["config.yaml"]))["spec"][
            "mtls"
        ]["enabled"]
        is True
    )
    [hook] = custom[("MutatingWebhookConfiguration", "tandem-injector")]["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] == 5
    assert custom[("PodDisruptionBudget", "tandem-controlplane")]["spec"]["maxUnavailable"] == "50%"
    pod = deployment(custom)["spec"]["template"]
    assert pod["metadata"]["annotations"]["team"] == "platform"
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    ports = {
        p["name"]: p["port"] for p in custom[("Service", "tandem-controlplane")]["spec"]["ports"]
    }
    assert ports == {"grpc-xds": 15010, "https-webhook": 443}
    for container in containers(custom).values():
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"injector": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
        ({"replicas": 0}, "replicas"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"logLevel": "verbose"}, "logLevel"),
        ({"mtls": {"enabeld": True}}, "enabeld"),
    ],
)
def test_wrong_values_are_refused(values: dict[str, Any], said: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=said):
        _render(values)


def test_kubernetes_version_is_recent() -> None:
    major, minor = map(int, KUBERNETES.split(".")[:2])
    assert (major, minor) >= (1, 33)
