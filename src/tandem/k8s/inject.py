"""A pod and its annotations in, the JSON patch that adds Tandem's sidecar out. Pure.

The sidecar is the two processes `tandem run` starts, with the same flags: the runtime
(``python -m tandem.ext_proc``) and Envoy (its bootstrap rendered here, node id and pod IP
filled in by the kubelet from the downward API). By default both are native sidecars
(init containers with ``restartPolicy: Always``): they start before the app's containers,
in order, and stop after them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.cli import app_side, observability
from tandem.envoy.bootstrap import parse_address, render_bootstrap
from tandem.k8s.annotations import SidecarSpec

ENROL = "tandem-enrol"
RESOURCES = "tandem-resources"
RUNTIME = "tandem-runtime"
ENVOY = "tandem-envoy"
SIDECAR_VOLUME = "tandem-sidecar"
TOKEN_VOLUME = "tandem-token"
RUN_DIR = Path("/var/run/tandem")
TOKEN_DIR = "/var/run/secrets/tandem.io/serviceaccount"
INJECTED_LABEL = "dapr.io/sidecar-injected"
APP_ID_LABEL = "dapr.io/app-id"
# The image's non-root user (Dockerfile); runAsNonRoot needs a number to check.
SIDECAR_UID = 65532
# Dapr's key inside the Secret named by api-token-secret / app-token-secret.
TOKEN_KEY = "token"
# Written by the enrolment container (tandem.k8s.enrol) before the sidecar starts.
ENROLMENT_FRAGMENT = "enrolment.json"
# The namespace's dapr.io objects, kept by the resources container (tandem.k8s.resources_sync).
RESOURCES_DIR = RUN_DIR / "resources"
# The kubelet fills these in from the downward API when the container starts.
POD_NAME = "$(POD_NAME)"
POD_IP = "$(POD_IP)"


@dataclass(frozen=True, slots=True)
class InjectorSettings:
    """What the cluster decides (chart values), not the pod."""

    image: str
    control_plane_address: str  # host:port of the control plane's xDS Service
    pull_policy: str = "IfNotPresent"
    token_audience: str = "tandem.io/controlplane"
    token_seconds: int = 3600
    api_transport: str = "http"
    # host:port of the leader-only Service (placement, reminders, jobs); None: the above.
    placement_address: str | None = None


def already_injected(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    names = {
        c.get("name")
        for key in ("containers", "initContainers")
        for c in spec.get(key) or []
        if isinstance(c, Mapping)
    }
    return bool(names & {RUNTIME, ENVOY, ENROL, RESOURCES})


def _security(spec: SidecarSpec) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": SIDECAR_UID,
        "runAsGroup": SIDECAR_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": spec.seccomp_profile},
    }


def _resources(spec: SidecarSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.resources.requests:
        out["requests"] = dict(spec.resources.requests)
    if spec.resources.limits:
        out["limits"] = dict(spec.resources.limits)
    return out


def _downward_env() -> list[dict[str, Any]]:
    def field(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    return [
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("POD_IP", "status.podIP"),
        # Dapr's variable: the runtime loads only this namespace's components.
        field("NAMESPACE", "metadata.namespace"),
        # The root filesystem is read-only: temporary files go to the sidecar's volume.
        {"name": "TMPDIR", "value": str(RUN_DIR)},
    ]


def _secret_env(spec: SidecarSpec) -> list[dict[str, Any]]:
    out = []
    for name, secret in (
        ("DAPR_API_TOKEN", spec.api_token_secret),
        ("APP_API_TOKEN", spec.app_token_secret),
    ):
        if secret is not None:
            ref = {"name": secret, "key": TOKEN_KEY}
            out.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return out


def _app_side(spec: SidecarSpec) -> app_side.AppSideOptions:
    return app_side.AppSideOptions(
        enable_app_health_check=spec.enable_app_health_check,
        app_health_check_path=spec.app_health_check_path,
        app_health_probe_interval=spec.app_health_probe_interval,
        app_health_probe_timeout=spec.app_health_probe_timeout,
        app_health_threshold=spec.app_health_threshold,
        app_max_concurrency=spec.app_max_concurrency,
        enable_api_logging=spec.enable_api_logging,
    )


def _log_level(spec: SidecarSpec) -> str:
    # As `tandem run` maps Dapr's levels (cli/main.py).
    if spec.log_level in ("fatal", "panic"):
        return "critical"
    return "warning" if spec.log_level == "warn" else spec.log_level


def runtime_file_name(kind: str, name: str) -> str:
    """The file an object of the namespace becomes in RESOURCES_DIR (resource_service)."""
    return f"{kind.lower()}-{name}.yaml"


def config_file(name: str) -> Path:
    """Where the runtime finds the Configuration ``name`` (tandem.k8s.resource_service)."""
    return RESOURCES_DIR / runtime_file_name("Configuration", name)


def runtime_argv(spec: SidecarSpec, settings: InjectorSettings, namespace: str) -> list[str]:
    """The runtime's command line, as `tandem run` builds it (cli/run.py)."""
    argv = [
        "python",
        "-m",
        "tandem.ext_proc",
        "--app-id",
        spec.app_id,
        "--socket",
        str(RUN_DIR / "runtime.sock"),
        "--home",
        str(RUN_DIR / "home"),
        "--app-protocol",
        spec.app_protocol,
        "--max-body-bytes",
        str(spec.max_body_mb << 20),
        "--log-level",
        _log_level(spec),
        *(["--log-as-json"] if spec.log_as_json else []),
        "--graceful-shutdown-seconds",
        str(spec.graceful_shutdown_seconds),
        "--namespace",
        namespace,
    ]
    if spec.app_port is not None:
        argv += ["--app-port", str(spec.app_port)]
    argv += ["--resources-path", str(RESOURCES_DIR)]
    if spec.config is not None:
        # The tandem-resources container writes it there before the runtime starts.
        argv += ["--config", str(config_file(spec.config)), "--config-name", spec.config]
    argv += ["--http-socket", str(RUN_DIR / "runtime-http.sock")]
    argv += ["--dapr-http-port", str(spec.http_port)]
    placement = settings.placement_address or settings.control_plane_address
    argv += ["--node-id", POD_NAME, "--control-plane", placement]
    argv += ["--actor-forward-socket", str(RUN_DIR / "actor-forward.sock")]
    argv += app_side.runtime_args(_app_side(spec), RUN_DIR, spec.app_port)
    argv += observability.runtime_args(RUN_DIR, RUN_DIR / "admin.sock")
    return argv


def envoy_bootstrap(
    spec: SidecarSpec, settings: InjectorSettings, namespace: str
) -> dict[str, Any]:
    """The node metadata `tandem run` sends, for a pod: fixed ports, the pod IP for the
    mTLS listener, the projected token in place of a locally minted credential."""
    options = _app_side(spec)
    api_log = (
        app_side.ApiLog(Path("/dev/stdout"), omit_health_checks=False, obfuscate_urls=False)
        if spec.enable_api_logging
        else None
    )
    metadata: dict[str, object] = {
        "app_id": spec.app_id,
        "namespace": namespace,
        "app_protocol": spec.app_protocol,
        "api_transport": settings.api_transport,
        "http_port": spec.http_port,
        "grpc_port": spec.grpc_port,
        "internal_port": spec.internal_port,
        "internal_address": POD_IP,
        "metrics_port": spec.metrics_port if spec.enable_metrics else None,
        "max_body_bytes": spec.max_body_mb << 20,
        "actor_forward_socket": str(RUN_DIR / "actor-forward.sock"),
        "app_port": spec.app_port,
        "key_path": str(RUN_DIR / "workload.key"),
        "service_account_token_path": f"{TOKEN_DIR}/token",
        "configuration": spec.config,
    }
    # The kubelet expands these from the Secret-backed env (as `tandem run` reads its env).
    if spec.api_token_secret is not None:
        metadata["dapr_api_token"] = "$(DAPR_API_TOKEN)"
    if spec.app_token_secret is not None:
        metadata["app_api_token"] = "$(APP_API_TOKEN)"
    metadata.update(app_side.node_metadata(options, RUN_DIR, spec.app_port, api_log))
    metadata["runtime_metrics_socket"] = str(RUN_DIR / observability.METRICS_SOCKET)
    bootstrap = render_bootstrap(
        node_id=POD_NAME,
        app_id=spec.app_id,
        metadata=metadata,
        ads_address=settings.control_plane_address,
        runtime_socket=RUN_DIR / "runtime.sock",
        admin_socket=RUN_DIR / "admin.sock",
        runtime_http_socket=RUN_DIR / "runtime-http.sock",
    )
    host, _ = parse_address(settings.control_plane_address)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A Service name: Envoy resolves it (and follows it when the Service moves); the
        # self-hosted template points at a local socket or IP (STATIC).
        for cluster in bootstrap["static_resources"]["clusters"]:
            if cluster["name"] == "xds_cluster":
                cluster["type"] = "STRICT_DNS"
    return bootstrap


def envoy_argv(spec: SidecarSpec, settings: InjectorSettings, namespace: str) -> list[str]:
    """Envoy's command line, as `tandem run` builds it (cli/run.py)."""
    bootstrap = json.dumps(envoy_bootstrap(spec, settings, namespace), separators=(",", ":"))
    return [
        "envoy",
        # The enrolment container's fragment (csr, credential); the YAML is merged over it.
        "--config-path",
        str(RUN_DIR / ENROLMENT_FRAGMENT),
        "--config-yaml",
        bootstrap,
        "--disable-hot-restart",
        "--log-level",
        "warn" if spec.log_level in ("info", "warn", "warning") else _log_level(spec),
        "--drain-strategy",
        "immediate",
        "--drain-time-s",
        "2",
        *app_side.envoy_args(_app_side(spec)),
    ]


def _probe_exec(spec: SidecarSpec, path: str) -> dict[str, Any]:
    return {"exec": {"command": ["python", "-m", "tandem.k8s.probe", str(spec.http_port), path]}}


def _mounts(spec: SidecarSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": SIDECAR_VOLUME, "mountPath": str(RUN_DIR)},
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
    ]
    return mounts


def _control_plane_client(
    name: str,
    module: str,
    args: list[str],
    spec: SidecarSpec,
    settings: InjectorSettings,
    namespace: str,
) -> dict[str, Any]:
    """A container of ours that talks to the control plane as this pod's sidecar: the
    image, identity arguments, downward env, mounts and security every such one shares."""
    return {
        "name": name,
        "image": spec.image or settings.image,
        "imagePullPolicy": settings.pull_policy,
        "command": ["python", "-m", module],
        "args": [
            "--control-plane",
            settings.control_plane_address,
            *args,
            "--run-dir",
            str(RUN_DIR),
            "--app-id",
            spec.app_id,
            "--namespace",
            namespace,
            "--node-id",
            POD_NAME,
        ],
        "env": _downward_env(),
        "volumeMounts": _mounts(spec),
        "securityContext": _security(spec),
        **({"resources": _resources(spec)} if _resources(spec) else {}),
    }


def enrol_container(
    spec: SidecarSpec, settings: InjectorSettings, namespace: str
) -> dict[str, Any]:
    """The init container that enrols the sidecar with its projected token (runs once,
    before the sidecar; see tandem.k8s.enrol)."""
    args = ["--token-file", f"{TOKEN_DIR}/token"]
    return _control_plane_client(ENROL, "tandem.k8s.enrol", args, spec, settings, namespace)


def resources_container(
    spec: SidecarSpec, settings: InjectorSettings, namespace: str
) -> dict[str, Any]:
    """The sidecar that keeps the runtime's resources folder equal to the namespace's
    dapr.io objects; ready once the first set is written."""
    container = _control_plane_client(
        RESOURCES,
        "tandem.k8s.resources_sync",
        ["--out", str(RESOURCES_DIR)],
        spec,
        settings,
        namespace,
    )
    container["startupProbe"] = {
        "exec": {
            "command": [
                "python",
                "-c",
                "import os,sys;sys.exit(not os.path.exists(sys.argv[1]))",
                str(RESOURCES_DIR / ".synced"),
            ]
        },
        "periodSeconds": 1,
        "timeoutSeconds": 5,
        "failureThreshold": 120,
    }
    if spec.native_sidecar:
        container["restartPolicy"] = "Always"
    return container


def containers(
    spec: SidecarSpec, settings: InjectorSettings, namespace: str
) -> list[dict[str, Any]]:
    """The runtime, then Envoy: the order they must start in."""
    image = spec.image or settings.image
    env = [
        *_downward_env(),
        {"name": "APP_ID", "value": spec.app_id},
        *({"name": k, "value": v} for k, v in spec.env),
        *_secret_env(spec),
    ]
    runtime_mounts = _mounts(spec) + [
        {"name": m.volume, "mountPath": m.path, "readOnly": m.read_only} for m in spec.volume_mounts
    ]
    runtime: dict[str, Any] = {
        "name": RUNTIME,
        "image": image,
        "imagePullPolicy": settings.pull_policy,
        "command": runtime_argv(spec, settings, namespace)[:3],
        "args": runtime_argv(spec, settings, namespace)[3:],
        "env": env,
        "volumeMounts": runtime_mounts,
        "securityContext": _security(spec),
        # Envoy must not start before the runtime's socket is there (as `tandem run` waits).
        "startupProbe": {
            "exec": {
                "command": [
                    "python",
                    "-c",
                    "import socket,sys;socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
                    str(RUN_DIR / "runtime.sock"),
                ]
            },
            "periodSeconds": 1,
            # A Python start-up on a busy node can take more than the default second.
            "timeoutSeconds": 5,
            "failureThreshold": 120,
        },
    }
    ports = [
        {"name": "dapr-http", "containerPort": spec.http_port, "protocol": "TCP"},
        {"name": "dapr-grpc", "containerPort": spec.grpc_port, "protocol": "TCP"},
        {"name": "dapr-internal", "containerPort": spec.internal_port, "protocol": "TCP"},
    ]
    if spec.enable_metrics:
        ports.append(
            {"name": "dapr-metrics", "containerPort": spec.metrics_port, "protocol": "TCP"}
        )
    argv = envoy_argv(spec, settings, namespace)
    envoy: dict[str, Any] = {
        "name": ENVOY,
        "image": image,
        "imagePullPolicy": settings.pull_policy,
        "command": argv[:1],
        "args": argv[1:],
        # The bootstrap names $(POD_NAME), $(POD_IP) and the API tokens' variables.
        "env": [*_downward_env(), *_secret_env(spec)],
        "ports": ports,
        "volumeMounts": _mounts(spec),
        "securityContext": _security(spec),
        # The app starts once this passes: the sidecar can serve it (Dapr's outbound health).
        "startupProbe": {
            **_probe_exec(spec, "/v1.0/healthz/outbound"),
            "periodSeconds": 1,
            "timeoutSeconds": 5,
            "failureThreshold": 120,
        },
        "livenessProbe": {
            **_probe_exec(spec, "/v1.0/healthz/outbound"),
            "initialDelaySeconds": spec.liveness.delay,
            "timeoutSeconds": spec.liveness.timeout,
            "periodSeconds": spec.liveness.period,
            "failureThreshold": spec.liveness.threshold,
        },
        "readinessProbe": {
            **_probe_exec(spec, "/v1.0/healthz"),
            "initialDelaySeconds": spec.readiness.delay,
            "timeoutSeconds": spec.readiness.timeout,
            "periodSeconds": spec.readiness.period,
            "failureThreshold": spec.readiness.threshold,
        },
    }
    resources = _resources(spec)
    out = [runtime, envoy]
    for container in out:
        if resources:
            container["resources"] = resources
        if spec.native_sidecar:
            container["restartPolicy"] = "Always"
    return out


def volumes(settings: InjectorSettings) -> list[dict[str, Any]]:
    return [
        {"name": SIDECAR_VOLUME, "emptyDir": {}},
        {
            "name": TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": settings.token_audience,
                            "expirationSeconds": settings.token_seconds,
                            "path": "token",
                        }
                    }
                ]
            },
        },
    ]


def app_env(spec: SidecarSpec) -> list[dict[str, Any]]:
    """What the app's containers are told, as Dapr's injector tells them."""
    env: list[dict[str, Any]] = [
        {"name": "DAPR_HTTP_PORT", "value": str(spec.http_port)},
        {"name": "DAPR_GRPC_PORT", "value": str(spec.grpc_port)},
        {"name": "APP_ID", "value": spec.app_id},
        {"name": "APP_PROTOCOL", "value": spec.app_protocol},
    ]
    if spec.app_port is not None:
        env.append({"name": "APP_PORT", "value": str(spec.app_port)})
    if spec.enable_metrics:
        env.append({"name": "DAPR_METRICS_PORT", "value": str(spec.metrics_port)})
    return env + _secret_env(spec)


def _pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _add_items(
    ops: list[dict[str, Any]],
    path: Sequence[str | int],
    current: object,
    items: list[Any],
    at_front: bool = False,
) -> None:
    """Add ``items`` to the list at ``path`` (creating it when absent)."""
    if not isinstance(current, list) or not current:
        ops.append({"op": "add", "path": _pointer(*path), "value": items})
        return
    for index, item in enumerate(items):
        where: str | int = index if at_front else "-"
        ops.append({"op": "add", "path": _pointer(*path, where), "value": item})


def patch(
    pod: Mapping[str, Any], spec: SidecarSpec, settings: InjectorSettings, namespace: str
) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that injects the sidecar into ``pod``."""
    ops: list[dict[str, Any]] = []
    pod_spec = pod.get("spec") or {}
    sidecar = [
        resources_container(spec, settings, namespace),
        *containers(spec, settings, namespace),
    ]
    enrol = enrol_container(spec, settings, namespace)
    if spec.native_sidecar:
        # First among the init containers: the app's own init containers may use Dapr.
        inits = [enrol, *sidecar]
        _add_items(ops, ("spec", "initContainers"), pod_spec.get("initContainers"), inits, True)
    else:
        _add_items(ops, ("spec", "initContainers"), pod_spec.get("initContainers"), [enrol], True)
        _add_items(ops, ("spec", "containers"), pod_spec.get("containers"), sidecar)
    taken = {str(v.get("name")) for v in pod_spec.get("volumes") or [] if isinstance(v, Mapping)}
    clash = taken & {SIDECAR_VOLUME, TOKEN_VOLUME}
    if clash:
        raise ValueError(f"the pod already has a volume named {sorted(clash)[0]}")
    missing = {m.volume for m in spec.volume_mounts} - taken
    if missing:
        raise ValueError(f"volume-mounts names volume {sorted(missing)[0]!r}, not in the pod")
    _add_items(ops, ("spec", "volumes"), pod_spec.get("volumes"), volumes(settings))
    wanted = app_env(spec)
    for index, container in enumerate(pod_spec.get("containers") or []):
        present = {e.get("name") for e in container.get("env") or [] if isinstance(e, Mapping)}
        # A variable the app sets itself is left as it is.
        new = [e for e in wanted if e["name"] not in present]
        if new:
            _add_items(ops, ("spec", "containers", index, "env"), container.get("env"), new)
    labels = (pod.get("metadata") or {}).get("labels")
    new_labels = {INJECTED_LABEL: "true", APP_ID_LABEL: spec.app_id}
    if not isinstance(labels, Mapping) or not labels:
        ops.append({"op": "add", "path": "/metadata/labels", "value": new_labels})
    else:
        for key, value in new_labels.items():
            ops.append({"op": "add", "path": _pointer("metadata", "labels", key), "value": value})
    return ops
