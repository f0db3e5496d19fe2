"""Dapr's pod annotations (``dapr.io/*``) read into one typed value.

Every annotation is either honoured, accepted with a note (it has no meaning for Tandem),
or refused: an unknown or malformed one makes the injector leave the pod alone and say why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "dapr.io/"
APP_PROTOCOLS = ("http", "grpc", "https", "grpcs", "h2c")
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "fatal", "panic")
# Dapr's defaults for the sidecar's ports inside a pod.
DEFAULT_HTTP_PORT = 3500
DEFAULT_GRPC_PORT = 50001
DEFAULT_INTERNAL_PORT = 50002
DEFAULT_METRICS_PORT = 9090
# An app id becomes part of DNS names and SPIFFE ids: a DNS-1123 label, as Dapr requires.
_APP_ID = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A Kubernetes resource quantity (cpu "250m", memory "128Mi", "1.5Gi", "1e3").
_QUANTITY = re.compile(
    r"[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?"
)
# A Configuration is named by a Kubernetes object name (DNS-1123 subdomain).
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Localhost profiles need a file on the node the injector cannot know about.
_SECCOMP = ("RuntimeDefault", "Unconfined")

# Annotations that mean nothing for Tandem: accepted, with a note saying why.
IGNORED = {
    "placement-host-address": "Tandem's control plane places actors; there is no placement service",
    "scheduler-host-address": "Tandem's control plane keeps reminders; there is no scheduler service",
    "enable-profiling": "the runtime has no Go profiler to expose",
    "sidecar-listen-addresses": "Envoy listens on the pod's loopback and the pod IP as needed",
    "sentry-request-jwt-audiences": "workload identity uses a projected ServiceAccount token",
    "disable-builtin-k8s-secret-store": "no built-in Kubernetes secret store is loaded yet",
    "http-read-buffer-size": "Envoy's header limit is not tied to a read buffer",
    "read-buffer-size": "Envoy's header limit is not tied to a read buffer",
}
# Dapr annotations Tandem cannot honour yet: the pod is left alone rather than run wrongly.
UNSUPPORTED = {
    "unix-domain-socket-path": "the Dapr API over Unix sockets is not offered in pods yet",
    "enable-debug": "the runtime has no debugger port",
    "debug-port": "the runtime has no debugger port",
    "pluggable-components": "pluggable components are not supported",
    "pluggable-components-sockets-folder": "pluggable components are not supported",
    "component-container": "pluggable components are not supported",
    "inject-pluggable-components": "pluggable components are not supported",
    "app-channel-address": "the app is reached on the pod's loopback only",
    "block-shutdown-duration": "not supported yet; use graceful-shutdown-seconds",
    "env-from-secret": "not supported yet; use the app's own env with secretKeyRef",
}


class AnnotationError(ValueError):
    """One annotation that cannot be used; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class Probe:
    delay: int = 3
    timeout: int = 3
    period: int = 6
    threshold: int = 3


@dataclass(frozen=True, slots=True)
class Resources:
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VolumeMount:
    volume: str
    path: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class SidecarSpec:
    """What the annotations ask for; defaults are Dapr's."""

    app_id: str
    app_port: int | None = None
    app_protocol: str = "http"
    config: str | None = None
    log_level: str = "info"
    log_as_json: bool = False
    enable_api_logging: bool = False
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    internal_port: int = DEFAULT_INTERNAL_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    enable_metrics: bool = True
    max_body_mb: int = 4
    graceful_shutdown_seconds: float = 5.0
    app_max_concurrency: int | None = None
    enable_app_health_check: bool = False
    app_health_check_path: str = "/healthz"
    app_health_probe_interval: float = 5.0
    app_health_probe_timeout: float = 500.0
    app_health_threshold: int = 3
    api_token_secret: str | None = None
    app_token_secret: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    resources: Resources = field(default_factory=Resources)
    liveness: Probe = Probe()
    readiness: Probe = Probe()
    native_sidecar: bool = True
    image: str | None = None
    seccomp_profile: str = "RuntimeDefault"
    volume_mounts: tuple[VolumeMount, ...] = ()
    notes: tuple[str, ...] = ()


def enabled(annotations: Mapping[str, str]) -> bool:
    return annotations.get(PREFIX + "enabled", "").strip().lower() in ("true", "1", "yes", "y")


def _bool(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "y", "on"):
        return True
    if value in ("false", "0", "no", "n", "off"):
        return False
    raise AnnotationError(f"{PREFIX}{key}: {text!r} is not true or false")


def _int(key: str, text: str, low: int = 0, high: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise AnnotationError(f"{PREFIX}{key}: {text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f"{low} or more"
        raise AnnotationError(f"{PREFIX}{key}: {value} is out of range ({bounds})")
    return value


def _port(key: str, text: str) -> int:
    return _int(key, text, 1, 65535)


def _float(key: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise AnnotationError(f"{PREFIX}{key}: {text!r} is not a number") from None
    if value <= 0:
        raise AnnotationError(f"{PREFIX}{key}: must be above 0, got {text!r}")
    return value


def _quantity(key: str, text: str) -> str:
    value = text.strip()
    if not _QUANTITY.fullmatch(value):
        raise AnnotationError(f"{PREFIX}{key}: {text!r} is not a Kubernetes quantity")
    return value


def _mebibytes(key: str, text: str) -> int:
    """A body size in whole MiB, read as `tandem run --max-body-size` reads it."""
    from argparse import ArgumentTypeError

    from tandem.cli.main import _mebibytes as mebibytes

    try:
        return mebibytes(text)
    except ArgumentTypeError as exc:
        raise AnnotationError(f"{PREFIX}{key}: {exc}") from None


def _env(key: str, text: str) -> tuple[tuple[str, str], ...]:
    """``A=1,B=two`` as Dapr writes it."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not _ENV_NAME.fullmatch(name):
            raise AnnotationError(f"{PREFIX}{key}: {item!r} is not NAME=value")
        pairs.append((name, value.strip()))
    return tuple(pairs)


def _mounts(key: str, text: str, read_only: bool) -> tuple[VolumeMount, ...]:
    """``volume:/path,other:/path2`` as Dapr writes it."""
    mounts = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        volume, sep, path = item.partition(":")
        if not sep or not volume or not path.startswith("/"):
            raise AnnotationError(f"{PREFIX}{key}: {item!r} is not volume:/absolute/path")
        mounts.append(VolumeMount(volume.strip(), path.strip(), read_only))
    return tuple(mounts)


def _graceful(text: str | None) -> float:
    # Dapr: -1 (its default) means the default of 5 seconds.
    if text is None or text.strip() == "-1":
        return 5.0
    return float(_int("graceful-shutdown-seconds", text, 0))


def _probe(prefix: str, annotations: Mapping[str, str]) -> Probe:
    def get(name: str, default: int) -> int:
        key = f"sidecar-{prefix}-probe-{name}"
        text = annotations.get(PREFIX + key)
        return default if text is None else _int(key, text, 1 if name != "delay-seconds" else 0)

    return Probe(
        delay=get("delay-seconds", 3),
        timeout=get("timeout-seconds", 3),
        period=get("period-seconds", 6),
        threshold=get("threshold", 3),
    )


HONOURED = frozenset(
    {
        "enabled",
        "app-id",
        "app-port",
        "app-protocol",
        "app-ssl",
        "config",
        "log-level",
        "log-as-json",
        "enable-api-logging",
        "grpc-port",
        "internal-grpc-port",
        "metrics-port",
        "enable-metrics",
        "http-max-request-size",
        "max-body-size",
        "graceful-shutdown-seconds",
        "app-max-concurrency",
        "enable-app-health-check",
        "app-health-check-path",
        "app-health-probe-interval",
        "app-health-probe-timeout",
        "app-health-threshold",
        "api-token-secret",
        "app-token-secret",
        "env",
        "sidecar-cpu-request",
        "sidecar-cpu-limit",
        "sidecar-memory-request",
        "sidecar-memory-limit",
        "enable-native-sidecar",
        "sidecar-image",
        "sidecar-seccomp-profile-type",
        "volume-mounts",
        "volume-mounts-rw",
        *(
            f"sidecar-{kind}-probe-{name}"
            for kind in ("liveness", "readiness")
            for name in ("delay-seconds", "timeout-seconds", "period-seconds", "threshold")
        ),
    }
)


def parse(annotations: Mapping[str, str], fallback_app_id: str) -> SidecarSpec:
    """The sidecar a pod's annotations ask for. ``fallback_app_id`` is Dapr's default (the
    pod's owner name). Raises AnnotationError naming the first annotation that cannot be
    used (unknown, unsupported or malformed)."""
    ours = {k.removeprefix(PREFIX): v for k, v in annotations.items() if k.startswith(PREFIX)}
    notes = []
    for key in sorted(ours):
        if key in HONOURED:
            continue
        if key in IGNORED:
            notes.append(f"{PREFIX}{key} ignored: {IGNORED[key]}")
        elif key in UNSUPPORTED:
            raise AnnotationError(f"{PREFIX}{key}: {UNSUPPORTED[key]}")
        else:
            raise AnnotationError(f"{PREFIX}{key}: unknown annotation")

    app_id = ours.get("app-id", "").strip() or fallback_app_id
    if not _APP_ID.fullmatch(app_id):
        raise AnnotationError(
            f"{PREFIX}app-id: {app_id!r} must be a DNS label (lower case, digits, '-')"
        )
    protocol = ours.get("app-protocol", "http").strip().lower()
    if "app-ssl" in ours and _bool("app-ssl", ours["app-ssl"]):
        # Dapr's deprecated spelling of the TLS protocols.
        protocol = {"http": "https", "grpc": "grpcs"}.get(protocol, protocol)
    if protocol not in APP_PROTOCOLS:
        raise AnnotationError(
            f"{PREFIX}app-protocol: {protocol!r} is not one of {', '.join(APP_PROTOCOLS)}"
        )
    log_level = ours.get("log-level", "info").strip().lower()
    if log_level not in LOG_LEVELS:
        raise AnnotationError(f"{PREFIX}log-level: {log_level!r} is not one of {LOG_LEVELS}")
    body_mb = 4
    if "max-body-size" in ours:
        body_mb = _mebibytes("max-body-size", ours["max-body-size"])
    elif "http-max-request-size" in ours:
        # Dapr's older annotation is a number of MB.
        body_mb = _int("http-max-request-size", ours["http-max-request-size"], 1)
    concurrency = None
    if "app-max-concurrency" in ours:
        limit = _int("app-max-concurrency", ours["app-max-concurrency"], -1)
        concurrency = limit if limit > 0 else None  # Dapr: below 1 means no limit
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    for kind in ("cpu", "memory"):
        for bucket, name in ((requests, "request"), (limits, "limit")):
            key = f"sidecar-{kind}-{name}"
            if key in ours:
                bucket[kind] = _quantity(key, ours[key])
    seccomp = ours.get("sidecar-seccomp-profile-type", "RuntimeDefault").strip()
    if seccomp not in _SECCOMP:
        raise AnnotationError(
            f"{PREFIX}sidecar-seccomp-profile-type: {seccomp!r} is not RuntimeDefault or Unconfined"
        )
    image = ours.get("sidecar-image", "").strip() or None
    config = ours.get("config", "").strip() or None
    if config is not None and not (len(config) <= 253 and _OBJECT_NAME.fullmatch(config)):
        raise AnnotationError(f"{PREFIX}config: {config!r} is not a Configuration's name")
    health_path = ours.get("app-health-check-path", "/healthz").strip() or "/healthz"
    if not health_path.startswith("/") or "$" in health_path or " " in health_path:
        raise AnnotationError(f"{PREFIX}app-health-check-path: {health_path!r} is not a path")
    return SidecarSpec(
        app_id=app_id,
        app_port=_port("app-port", ours["app-port"]) if "app-port" in ours else None,
        app_protocol=protocol,
        config=config,
        log_level=log_level,
        log_as_json=_bool("log-as-json", ours.get("log-as-json", "false")),
        enable_api_logging=_bool("enable-api-logging", ours.get("enable-api-logging", "false")),
        grpc_port=_port("grpc-port", ours.get("grpc-port", str(DEFAULT_GRPC_PORT))),
        internal_port=_port(
            "internal-grpc-port", ours.get("internal-grpc-port", str(DEFAULT_INTERNAL_PORT))
        ),
        metrics_port=_port("metrics-port", ours.get("metrics-port", str(DEFAULT_METRICS_PORT))),
        enable_metrics=_bool("enable-metrics", ours.get("enable-metrics", "true")),
        max_body_mb=body_mb,
        graceful_shutdown_seconds=_graceful(ours.get("graceful-shutdown-seconds")),
        app_max_concurrency=concurrency,
        enable_app_health_check=_bool(
            "enable-app-health-check", ours.get("enable-app-health-check", "false")
        ),
        app_health_check_path=health_path,
        app_health_probe_interval=_float(
            "app-health-probe-interval", ours.get("app-health-probe-interval", "5")
        ),
        app_health_probe_timeout=_float(
            "app-health-probe-timeout", ours.get("app-health-probe-timeout", "500")
        ),
        app_health_threshold=_int("app-health-threshold", ours.get("app-health-threshold", "3"), 1),
        api_token_secret=ours.get("api-token-secret", "").strip() or None,
        app_token_secret=ours.get("app-token-secret", "").strip() or None,
        env=_env("env", ours.get("env", "")),
        resources=Resources(requests, limits),
        liveness=_probe("liveness", annotations),
        readiness=_probe("readiness", annotations),
        native_sidecar=_bool("enable-native-sidecar", ours.get("enable-native-sidecar", "true")),
        image=image,
        seccomp_profile=seccomp,
        volume_mounts=_mounts("volume-mounts", ours.get("volume-mounts", ""), True)
        + _mounts("volume-mounts-rw", ours.get("volume-mounts-rw", ""), False),
        notes=tuple(notes),
    )
