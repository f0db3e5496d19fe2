"""A pod's processes without a cluster: the control plane started with the command line the
chart renders (against a stand-in API server: the CA Secret, TokenReview, the pod), the
enrolment init container, the runtime and Envoy with the command lines the injector writes
(the kubelet's part, $(VAR) expansion, the volume paths and the projected token, done
here), and the sidecar's own probes deciding when it is up. The Dapr API then answers
through that Envoy, which holds a certificate for the pod's identity. Two control-plane
replicas run, both behind Envoy's xDS cluster (the Service's part); when the one serving the
Envoy dies, the other admits it."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import pytest
from apiserver import ApiServer
from k8s_schemas import CHART, documents

from servers import free_port, wait_until
from tandem.envoy import envoy_binary
from tandem.k8s.annotations import parse
from tandem.k8s.inject import (
    RUN_DIR,
    TOKEN_DIR,
    InjectorSettings,
    containers,
    enrol_container,
    resources_container,
)

POD_ENV = {"POD_NAME": "orders-7d9f8c6b5-x2x9q", "POD_NAMESPACE": "shop", "POD_IP": "127.0.0.1"}


def _kubelet(text: str, env: Mapping[str, str], run_dir: Path) -> str:
    """$(VAR) expanded as the kubelet does; the sidecar's volume at ``run_dir``."""
    text = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)
    return text.replace(TOKEN_DIR, str(run_dir / "token")).replace(str(RUN_DIR), str(run_dir))


def _argv(container: Mapping[str, Any], env: Mapping[str, str], run_dir: Path) -> list[str]:
    argv = [*container["command"], *container.get("args", [])]
    program = {"python": sys.executable, "envoy": str(envoy_binary())}[argv[0]]
    return [program, *(_kubelet(a, env, run_dir) for a in argv[1:])]


def _container_env(container: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(POD_ENV, NAMESPACE=POD_ENV["POD_NAMESPACE"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = _kubelet(entry["value"], env, run_dir)
    return env


def _probe(container: Mapping[str, Any], name: str, run_dir: Path) -> bool:
    command = container[name]["exec"]["command"]
    argv = [sys.executable, *(_kubelet(a, POD_ENV, run_dir) for a in command[1:])]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start(argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT)


def _pod(annotations: Mapping[str, str]) -> dict[str, Any]:
    """The pod as the API server holds it once admitted (annotations, owner, labels)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD_ENV["POD_NAME"],
            "namespace": POD_ENV["POD_NAMESPACE"],
            "annotations": dict(annotations),
            "labels": {"app": "orders", "dapr.io/sidecar-injected": "true"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "orders-7d9f8c6b5",
                    "uid": "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
                    "controller": True,
                }
            ],
        },
        "spec": {"serviceAccountName": "orders", "containers": [{"name": "orders"}]},
    }


def _allowed(pod: Mapping[str, Any], audience: str) -> dict[str, Any]:
    """TokenReview's status for the pod's projected token (see fixtures/tokenreview-*)."""
    meta = pod["metadata"]
    return {
        "authenticated": True,
        "user": {
            "username": f"system:serviceaccount:{meta['namespace']}:orders",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/pod-name": [meta["name"]],
                "authentication.kubernetes.io/pod-uid": [meta["uid"]],
            },
        },
        "audiences": [audience],
    }


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Short: Unix socket paths must stay under ~100 bytes.
    path = Path(tempfile.mkdtemp(prefix="tk8s-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _both_replicas(argv: list[str], ports: Sequence[int]) -> list[str]:
    """Envoy's xDS cluster fronting both replicas, as the control plane's Service does."""
    argv = list(argv)
    at = argv.index("--config-yaml") + 1
    bootstrap = json.loads(argv[at])
    [xds] = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds_cluster"]
    xds["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
        for p in ports
    ]
    argv[at] = json.dumps(bootstrap)
    return argv


def test_the_injected_sidecar_serves_with_the_charted_control_plane(run_dir: Path) -> None:
    xds_port, xds_port2 = free_port(), free_port()
    values = {"mtls": {"enabled": False}, "controlPlane": {"port": xds_port}}
    manifests = helm.Chart.load(CHART).render(values, name="tandem", namespace="tandem-system")
    objects = {
        (o["kind"], o["metadata"]["name"]): o for t in manifests.values() for o in documents(t)
    }
    deployment = objects[("Deployment", "tandem-controlplane")]
    [cp] = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "controlplane"
    ]
    mesh = run_dir / "mesh.yaml"
    mesh.write_text(objects[("ConfigMap", "tandem-mesh")]["data"]["config.yaml"])
    cp_argv = [
        sys.executable,
        *(
            {"/var/lib/tandem": str(run_dir / "cp"), "/etc/tandem/mesh/config.yaml": str(mesh)}.get(
                a, "127.0.0.1" if a == "0.0.0.0" else a
            )
            for a in [*cp["command"][1:], *cp["args"]]
        ),
    ]

    annotations = {
        "dapr.io/enabled": "true",
        "dapr.io/app-id": "orders",
        "dapr.io/app-port": "8080",
        "dapr.io/config": "appconfig",
    }
    spec = dataclasses.replace(
        parse(annotations, "orders"),
        # Dapr's fixed pod ports are shared on this machine: free ones instead.
        http_port=free_port(),
        grpc_port=free_port(),
        internal_port=free_port(),
        metrics_port=free_port(),
    )
    settings = InjectorSettings(image="unused", control_plane_address=f"127.0.0.1:{xds_port}")
    runtime, envoy = containers(spec, settings, "shop")
    enrol = enrol_container(spec, settings, "shop")
    resources = resources_container(spec, settings, "shop")
    pod_dir = run_dir / "pod"
    (pod_dir / "token").mkdir(parents=True)
    # The kubelet's projected token; the stand-in API server vouches for it.
    (pod_dir / "token" / "token").write_text("projected-token-of-orders\n")
    api = ApiServer().start()
    pod = api.put(_pod(annotations))
    api.token_reviews["projected-token-of-orders"] = _allowed(pod, settings.token_audience)
    # The namespace's state store, as `kubectl apply` leaves it (the runtime loads it).
    api.put(
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "statestore", "namespace": "shop"},
            "spec": {"type": "state.in-memory", "version": "v1", "metadata": []},
        }
    )
    # The pod's dapr.io/config: the runtime reads its features, Envoy its API allow list.
    api.put(
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Configuration",
            "metadata": {"name": "appconfig", "namespace": "shop"},
            "spec": {
                "features": [{"name": "ActorStateTTL", "enabled": True}],
                "api": {
                    "allowed": [
                        {"name": api, "version": "v1.0", "protocol": "http"}
                        for api in ("state", "metadata")
                    ]
                },
            },
        }
    )
    cp_env = {
        **os.environ,
        "KUBECONFIG": str(api.kubeconfig(run_dir / "kubeconfig")),
        "POD_NAMESPACE": "tandem-system",
    }

    procs: list[subprocess.Popen[bytes]] = []
    try:
        cp1 = _start(cp_argv, cp_env, run_dir / "cp.log")
        procs.append(cp1)
        wait_until(
            lambda: _listening(xds_port),
            deadline_s=30,
            what="the control plane",
            alive=lambda: cp1.poll() is None,
        )
        # The second replica: same command line, its own port and volume.
        cp2_argv = [
            {str(xds_port): str(xds_port2), str(run_dir / "cp"): str(run_dir / "cp2")}.get(a, a)
            for a in cp_argv
        ]
        cp2 = _start(cp2_argv, {**cp_env, "POD_NAME": "replica-2"}, run_dir / "cp2.log")
        procs.append(cp2)
        wait_until(
            lambda: _listening(xds_port2),
            deadline_s=30,
            what="the second control plane",
            alive=lambda: cp2.poll() is None,
        )
        # The enrolment init container runs to completion first.
        enrol_env = _container_env(enrol, pod_dir)
        enrolled = subprocess.run(
            _argv(enrol, enrol_env, pod_dir), env=enrol_env, capture_output=True, timeout=120
        )
        assert enrolled.returncode == 0, enrolled.stderr.decode()
        assert b"spiffe://public/ns/shop/orders" in enrolled.stderr
        assert api.get("Secret", "tandem-system", "tandem-ca") is not None
        # Native sidecars start in order, each once the previous one's startup probe passes.
        resources_env = _container_env(resources, pod_dir)
        procs.append(
            _start(_argv(resources, resources_env, pod_dir), resources_env, run_dir / "res.log")
        )
        wait_until(
            lambda: _probe(resources, "startupProbe", pod_dir),
            deadline_s=60,
            what="the resources sidecar's startup probe",
            alive=lambda: procs[2].poll() is None,
        )
        runtime_env = _container_env(runtime, pod_dir)
        procs.append(_start(_argv(runtime, runtime_env, pod_dir), runtime_env, run_dir / "rt.log"))
        wait_until(
            lambda: _probe(runtime, "startupProbe", pod_dir),
            deadline_s=60,
            what="the runtime's startup probe",
            alive=lambda: procs[3].poll() is None,
        )
        envoy_env = _container_env(envoy, pod_dir)
        envoy_argv = _both_replicas(_argv(envoy, envoy_env, pod_dir), (xds_port, xds_port2))
        procs.append(_start(envoy_argv, envoy_env, run_dir / "envoy.log"))
        wait_until(
            lambda: _probe(envoy, "startupProbe", pod_dir),
            deadline_s=60,
            what="Envoy's startup probe",
            alive=lambda: procs[4].poll() is None,
        )
        logs = {cp1: run_dir / "cp.log", cp2: run_dir / "cp2.log"}
        [serving] = [cp for cp, log in logs.items() if "certificate issued" in log.read_text()]

        assert _probe(envoy, "livenessProbe", pod_dir)
        metadata = httpx.get(f"http://127.0.0.1:{spec.http_port}/v1.0/metadata", timeout=10).json()
        assert metadata["id"] == "orders"
        assert {c["name"] for c in metadata["components"]} >= {"statestore"}
        assert metadata["enabledFeatures"] == ["ActorStateTTL"]
        publish = f"http://127.0.0.1:{spec.http_port}/v1.0/publish/pubsub/orders"
        refused = httpx.post(publish, json={}, timeout=10)
        # Not in spec.api.allowed: Envoy's answer, not the runtime's ERR_PUBSUB_NOT_FOUND.
        assert refused.status_code == 404, refused.text
        assert refused.json()["errorCode"] == "ERR_BAD_REQUEST"
        base = f"http://127.0.0.1:{spec.http_port}/v1.0/state/statestore"
        saved = httpx.post(base, json=[{"key": "k", "value": "v"}], timeout=10)
        assert saved.status_code == 204, saved.text
        assert httpx.get(f"{base}/k", timeout=10).json() == "v"
        # No app listens on 8080: full health says so, and the readiness probe with it.
        health = httpx.get(f"http://127.0.0.1:{spec.http_port}/v1.0/healthz", timeout=10)
        assert health.status_code != 204
        assert not _probe(envoy, "readinessProbe", pod_dir)

        # The replica serving this Envoy dies: Envoy reconnects to the other, which admits
        # it with the same credential (one CA and enrolment key, in the Secret).
        [other] = [cp for cp in logs if cp is not serving]
        serving.terminate()
        serving.wait(timeout=15)
        wait_until(
            lambda: "certificate issued" in logs[other].read_text(),
            deadline_s=60,
            what="the other replica admitting the sidecar",
            alive=lambda: other.poll() is None and procs[4].poll() is None,
        )
        assert _probe(envoy, "livenessProbe", pod_dir)
        assert httpx.get(f"{base}/k", timeout=10).json() == "v"
        # That replica applied the same Configuration when it admitted the sidecar.
        assert httpx.post(publish, json={}, timeout=10).json()["errorCode"] == "ERR_BAD_REQUEST"
    except Exception:
        for log in sorted(run_dir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        api.stop()
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
