"""Golden files: ``in/<case>.yaml`` → ``out/<case>.yaml``. Refresh with ``pytest --update-golden``.

Translator cases name a mesh (``sidecars``), the node to ``render`` and optionally the mesh
``security`` (``mtls``, a placeholder trust bundle and certificates per node); bootstrap
cases (``bootstrap-*.yaml``) hold the arguments of ``render_bootstrap``. Each translator
case is also checked by Envoy itself (``envoy --mode validate``), with RDS inlined, EDS made
static and SDS secrets replaced by static ones holding a real certificate and key, since
validation mode has no ADS to fetch from.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from tandem.envoy import envoy_binary, render_bootstrap
from tandem.xds.ca import CertificateAuthority, csr_public_key
from tandem.xds.enrolment import WorkloadKey
from tandem.xds.ir import Mesh, MeshSecurity, Sidecar
from tandem.xds.translate import Resources, translate
from tandem.xds.translate.http_endpoints import system_ca_file

HERE = Path(__file__).parent
CASES = sorted(p.stem for p in (HERE / "in").glob("*.yaml"))
TRANSLATOR_CASES = [c for c in CASES if not c.startswith("bootstrap-")]


def _load(case: str) -> dict[str, Any]:
    data = yaml.safe_load((HERE / "in" / f"{case}.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _dicts(messages: Any) -> list[dict[str, Any]]:
    # The JSON round trip turns the OrderedDicts MessageToDict makes for Any into plain dicts.
    return [
        json.loads(json.dumps(json_format.MessageToDict(m, preserving_proto_field_name=True)))
        for m in messages
    ]


def _as_dict(resources: Resources) -> dict[str, Any]:
    return {
        "listeners": _dicts(resources.listeners),
        "routes": _dicts(resources.routes),
        "clusters": _dicts(resources.clusters),
        "endpoints": _dicts(resources.endpoints),
        **({"secrets": _dicts(resources.secrets)} if resources.secrets else {}),
    }


def _translate_case(data: dict[str, Any]) -> Resources:
    sidecars = [Sidecar.from_node_metadata(s["node_id"], s["metadata"]) for s in data["sidecars"]]
    security = data.get("security")
    mesh = Mesh.of(
        sidecars,
        MeshSecurity(
            mtls=security["mtls"],
            trust_bundle_pem=security["trust_bundle"],
            certificates=security["certificates"],
            certificate_ttl=(
                dt.timedelta(seconds=security["certificate_ttl_s"])
                if "certificate_ttl_s" in security
                else None
            ),
        )
        if security
        else None,
    )
    target = mesh.get(data["render"])
    assert target is not None, f"render names an unknown node {data['render']!r}"
    return translate(target, mesh)


def _render(case: str) -> dict[str, Any]:
    data = _load(case)
    if "bootstrap" in data:
        return render_bootstrap(**data["bootstrap"])
    return _as_dict(_translate_case(data))


# The system's CA bundle differs between machines: golden files name it by this mark.
SYSTEM_CA = "<system CA bundle>"


def _dump(data: dict[str, Any]) -> str:
    text = yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=100)
    return text.replace(f"filename: {system_ca_file()}\n", f"filename: {SYSTEM_CA}\n")


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    actual = _dump(_render(case))
    out = HERE / "out" / f"{case}.yaml"
    if update_golden:
        out.write_text(actual)
    assert out.exists(), f"missing {out}; run pytest --update-golden"
    assert actual == out.read_text(), f"{case} differs from its golden file"


def test_translation_is_deterministic() -> None:
    data = _load("several-instances")
    shuffled = {**data, "sidecars": list(reversed(data["sidecars"]))}

    assert _as_dict(_translate_case(data)) == _as_dict(_translate_case(shuffled))


def _static_secrets(
    resources: dict[str, Any], workdir: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Point every SDS reference at a static secret with a real certificate and key."""
    if "secrets" not in resources:
        return resources, []
    ca = CertificateAuthority.generate()
    key = WorkloadKey.generate()
    key_path = workdir / "workload.key"
    key.write_key(key_path)
    leaf = ca.sign(csr_public_key(key.csr_pem), "spiffe://public/ns/default/validate")
    text = json.dumps(resources)
    for secret in resources["secrets"]:
        if "tls_certificate" in secret:
            text = text.replace(
                json.dumps(secret["tls_certificate"]["private_key"]["filename"]),
                json.dumps(str(key_path)),
            )
            text = text.replace(
                json.dumps(secret["tls_certificate"]["certificate_chain"]["inline_string"]),
                json.dumps(leaf.certificate_pem),
            )
        else:
            text = text.replace(
                json.dumps(secret["validation_context"]["trusted_ca"]["inline_string"]),
                json.dumps(ca.trust_bundle_pem),
            )
    resources = json.loads(text)

    def strip_sds(node: Any) -> None:
        if isinstance(node, dict):
            if "sds_config" in node and set(node) == {"name", "sds_config"}:
                del node["sds_config"]
            for value in node.values():
                strip_sds(value)
        elif isinstance(node, list):
            for value in node:
                strip_sds(value)

    secrets = resources.pop("secrets")
    strip_sds(resources)
    return resources, secrets


def _local_access_logs(node: Any, workdir: Path) -> None:
    """Validation opens access log files: point them into the test's own directory."""
    if isinstance(node, dict):
        if str(node.get("@type", "")).endswith(".FileAccessLog"):
            node["path"] = str(workdir / Path(node["path"]).name)
        for value in node.values():
            _local_access_logs(value, workdir)
    elif isinstance(node, list):
        for value in node:
            _local_access_logs(value, workdir)


def _static_bootstrap(resources: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The translated resources as static config Envoy can validate without a server."""
    resources, secrets = _static_secrets(resources, workdir)
    _local_access_logs(resources, workdir)
    routes = {r["name"]: r for r in resources["routes"]}
    assignments = {e["cluster_name"]: e for e in resources["endpoints"]}
    listeners = copy.deepcopy(resources["listeners"])
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                hcm = network_filter["typed_config"]
                if "rds" in hcm:
                    hcm["route_config"] = routes[hcm.pop("rds")["route_config_name"]]
    clusters = copy.deepcopy(resources["clusters"])
    for cluster in clusters:
        if cluster.get("type") == "EDS":
            cluster["type"] = "STATIC"
            del cluster["eds_cluster_config"]
            cluster["load_assignment"] = assignments[cluster["name"]]
    # The bootstrap's static runtime clusters (ext_proc/gRPC and the HTTP/1.1 front door).
    for name, path in (
        ("tandem_runtime", "/tmp/rt"),
        ("tandem_runtime_http", "/tmp/rt-http"),
        # With --runtime-workers N > 1 (translate/workers.py).
        ("tandem_runtime_workers", "/tmp/rt-1"),
        ("tandem_runtime_http_workers", "/tmp/rt-http-1"),
    ):
        clusters.append(
            {
                "name": name,
                "type": "STATIC",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [
                        {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": path}}}}]}
                    ],
                },
            }
        )
    return {
        "node": {"id": "validate", "cluster": "validate"},
        "static_resources": {"listeners": listeners, "clusters": clusters, "secrets": secrets},
    }


@pytest.mark.parametrize("case", TRANSLATOR_CASES)
def test_envoy_accepts_translated_resources(case: str, tmp_path: Path) -> None:
    config = _static_bootstrap(_as_dict(_translate_case(_load(case))), tmp_path)
    result = subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "error",
            "--config-yaml",
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "case", ["bootstrap-sidecar", "bootstrap-sidecar-http", "bootstrap-sidecar-workers"]
)
def test_envoy_accepts_the_rendered_bootstrap(case: str, tmp_path: Path) -> None:
    config = _render(case)
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
