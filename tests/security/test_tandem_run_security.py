"""Mesh security through `tandem run`, end to end: the real CLI, control plane, runtime
and Envoys. mTLS is the control plane's mesh-wide setting; tokens come from the
environment of `tandem run`, as daprd reads them from its own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import APPS, Sidecar, remove_home, start_app_sidecar, start_sidecar, wait_until

APP_CONFIG_TRYING_TO_DISABLE_MTLS = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: b-config}
spec:
  mtls: {enabled: false}
  accessControl:
    defaultAction: allow
"""

MESH_CONFIG_MTLS_OFF = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: daprsystem}
spec:
  mtls: {enabled: false}
"""


def _home() -> Path:
    return Path(tempfile.mkdtemp(prefix="tsec", dir="/tmp"))


def _cleanup(home: Path, sidecars: list[Sidecar]) -> None:
    for sidecar in sidecars:
        sidecar.stop()
    remove_home(home)


def _echo(home: Path, app_id: str, *extra: str, env: dict[str, str] | None = None) -> Sidecar:
    return start_app_sidecar(home, app_id, APPS / "echo_app.py", *extra, env=env)


def _reaches(caller: Sidecar, callee: str, headers: dict[str, str]) -> httpx.Response | None:
    reply = httpx.get(f"{caller.base}/v1.0/invoke/{callee}/method/ping", headers=headers, timeout=5)
    return reply if reply.headers.get("x-echo-app") == "yes" else None


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[Sidecar, Sidecar]]:
    """b: tokens, and a --config that tries to switch mTLS off; a: a caller with a token."""
    home = _home()
    config = home / "b-config.yaml"
    config.write_text(APP_CONFIG_TRYING_TO_DISABLE_MTLS)
    sidecars: list[Sidecar] = []
    try:
        sidecars.append(
            _echo(
                home,
                "b",
                "--config",
                str(config),
                env={"DAPR_API_TOKEN": "token-b", "APP_API_TOKEN": "app-token-b"},
            )
        )
        sidecars.append(start_sidecar(home, "a", env={"DAPR_API_TOKEN": "token-a"}))
        yield sidecars[1], sidecars[0]
    finally:
        _cleanup(home, sidecars)


def test_an_apps_own_config_cannot_switch_mtls_off_for_itself(guarded) -> None:
    a, b = guarded
    wait_until(lambda: _reaches(a, "b", {"dapr-api-token": "token-a"}), 30, "a to reach b")

    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{b.internal_port}/ping", timeout=5)


def test_the_app_sees_its_app_token_never_the_callers(guarded) -> None:
    a, _ = guarded
    reply = wait_until(lambda: _reaches(a, "b", {"dapr-api-token": "token-a"}), 30, "a to reach b")

    assert reply.json()["headers"]["dapr-api-token"] == "app-token-b"


@pytest.mark.parametrize(
    "path", ["/v1.0/state/statestore/k", "/v1.0/metadata", "/v1.0/invoke/b/method/ping"]
)
def test_tandem_run_with_dapr_api_token_answers_401_without_it(guarded, path: str) -> None:
    a, _ = guarded

    assert httpx.get(f"{a.base}{path}", timeout=5).status_code == 401
    wrong = {"dapr-api-token": "token-b"}
    assert httpx.get(f"{a.base}{path}", headers=wrong, timeout=5).status_code == 401
    assert httpx.get(f"{a.base}/v1.0/healthz", timeout=5).status_code == 204


def test_tandem_run_with_dapr_api_token_serves_the_api_with_it(guarded) -> None:
    a, _ = guarded
    reply = httpx.get(f"{a.base}/v1.0/metadata", headers={"dapr-api-token": "token-a"}, timeout=5)

    assert reply.status_code == 200
    assert reply.json()["id"] == "a"


def test_the_control_planes_configuration_switches_mtls_off_mesh_wide() -> None:
    home = _home()
    (home / "config.yaml").write_text(MESH_CONFIG_MTLS_OFF)
    sidecars: list[Sidecar] = []
    try:
        b = _echo(home, "b")
        sidecars.append(b)
        reply = httpx.get(f"http://127.0.0.1:{b.internal_port}/plain", timeout=5)

        assert reply.status_code == 200
        assert reply.headers["x-echo-app"] == "yes"
    finally:
        _cleanup(home, sidecars)
