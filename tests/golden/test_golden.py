"""Golden files: ``in/<case>.yaml`` → ``out/<case>.yaml``. Refresh with ``pytest --update-golden``.

Translator cases name a mesh (``sidecars``) and the node to ``render``; bootstrap cases
(``bootstrap-*.yaml``) hold the arguments of ``render_bootstrap``. Each translator case is
also checked by Envoy itself (``envoy --mode validate``), with RDS inlined and EDS made
static, since validation mode has no ADS to fetch from.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from tandem.envoy import envoy_binary, render_bootstrap
from tandem.xds.ir import Mesh, Sidecar
from tandem.xds.translate import Resources, translate

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
    }


def _translate_case(data: dict[str, Any]) -> Resources:
    sidecars = [Sidecar.from_node_metadata(s["node_id"], s["metadata"]) for s in data["sidecars"]]
    mesh = Mesh.of(sidecars)
    target = mesh.get(data["render"])
    assert target is not None, f"render names an unknown node {data['render']!r}"
    return translate(target, mesh)


def _render(case: str) -> dict[str, Any]:
    data = _load(case)
    if "bootstrap" in data:
        return render_bootstrap(**data["bootstrap"])
    return _as_dict(_translate_case(data))


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=100)


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


def _static_bootstrap(resources: dict[str, Any]) -> dict[str, Any]:
    """The translated resources as static config Envoy can validate without a server."""
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
    clusters.append(
        {
            "name": "tandem_runtime",
            "type": "STATIC",
            "load_assignment": {
                "cluster_name": "tandem_runtime",
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": "/tmp/rt"}}}}]}
                ],
            },
        }
    )
    return {
        "node": {"id": "validate", "cluster": "validate"},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


@pytest.mark.parametrize("case", TRANSLATOR_CASES)
def test_envoy_accepts_translated_resources(case: str) -> None:
    config = _static_bootstrap(_as_dict(_translate_case(_load(case))))
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


def test_envoy_accepts_the_rendered_bootstrap(tmp_path: Path) -> None:
    config = _render("bootstrap-sidecar")
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "--disable-hot-restart", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
