"""Dapr's multi-app run template (``dapr run -f``), read into one `tandem run` per app.

Pure: a file in, a list of :class:`AppRun` (the `tandem run` arguments, working directory,
environment and log destinations of each app) out. Every field of the template either
becomes a `tandem run` flag, is honoured here (paths, env, log destinations), or is refused
with the file, the field and the reason — none is read and dropped.

Paths: ``appDirPath`` and the ``common`` paths are relative to the template's folder; an
app's own ``resourcesPaths`` and ``configFilePath`` too (as Dapr resolves them). Without
them, an app's ``<appDirPath>/.dapr/resources`` and ``.dapr/config.yaml`` are used when they
exist (Dapr's convention), else the embedded defaults of `tandem run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = "dapr.yaml"
LOG_DESTINATIONS = ("file", "console", "fileAndConsole")

# Template fields that are `tandem run` flags taking a value.
_VALUE_FLAGS = {
    "appPort": "--app-port",
    "appProtocol": "--app-protocol",
    "daprHTTPPort": "--dapr-http-port",
    "daprGRPCPort": "--dapr-grpc-port",
    "daprInternalGRPCPort": "--dapr-internal-grpc-port",
    "metricsPort": "--metrics-port",
    "logLevel": "--log-level",
    "appMaxConcurrency": "--app-max-concurrency",
    "appHealthCheckPath": "--app-health-check-path",
    "appHealthProbeInterval": "--app-health-probe-interval",
    "appHealthProbeTimeout": "--app-health-probe-timeout",
    "appHealthThreshold": "--app-health-threshold",
    "daprHTTPMaxRequestSize": "--dapr-http-max-request-size",
    "maxBodySize": "--max-body-size",
    "daprGracefulShutdownSeconds": "--dapr-graceful-shutdown-seconds",
    "unixDomainSocket": "--unix-domain-socket",
    # Tandem's own: runtime processes for the stateless API paths (cli/workers.py).
    "runtimeWorkers": "--runtime-workers",
    # Accepted as `dapr run` accepts them; `tandem run` says it has no use for them.
    "placementHostAddress": "--placement-host-address",
    "schedulerHostAddress": "--scheduler-host-address",
}
# Template fields that are `tandem run` switches.
_SWITCHES = {
    "enableAppHealthCheck": "--enable-app-health-check",
    "enableApiLogging": "--enable-api-logging",
}
# Fields read here rather than passed on.
_OWN = {
    "appID",
    "appDirPath",
    "command",
    "env",
    "resourcesPath",
    "resourcesPaths",
    "configFilePath",
    "appLogDestination",
    "daprdLogDestination",
    "appChannelAddress",
}
_REFUSED = {
    "runtimePath": "Tandem's runtime is the installed `tandem` package; there is no daprd path",
    "enableProfiling": "Tandem serves no pprof endpoint (profile the runtime with py-spy)",
    "profilePort": "Tandem serves no pprof endpoint (profile the runtime with py-spy)",
    "daprHTTPReadBufferSize": "Envoy reads request headers; its buffer is not configurable here",
    "appSSL": "deprecated in Dapr; use appProtocol: https",
    "containerImage": "Kubernetes multi-app run (-k) is not supported",
    "containerImagePullPolicy": "Kubernetes multi-app run (-k) is not supported",
    "createService": "Kubernetes multi-app run (-k) is not supported",
}
_LOCAL_ADDRESSES = ("127.0.0.1", "localhost")


class RunFileError(Exception):
    """The template cannot run: the message names the file, the field and the reason."""


@dataclass(frozen=True, slots=True)
class AppRun:
    app_id: str
    app_dir: Path
    args: tuple[str, ...]  # after `tandem run`, the app command included (after `--`)
    env: Mapping[str, str] = field(default_factory=dict)
    app_log: str = "fileAndConsole"
    daprd_log: str = "file"

    @property
    def log_dir(self) -> Path:
        """Where the app's output file goes (Dapr's ``<appDirPath>/.dapr/logs``)."""
        return self.app_dir / ".dapr" / "logs"


@dataclass(frozen=True, slots=True)
class RunFile:
    path: Path
    apps: tuple[AppRun, ...]
    warnings: tuple[str, ...] = ()


def locate(given: str | Path) -> Path:
    """The template for ``-f``: a file, or a folder holding ``dapr.yaml``."""
    path = Path(given)
    if path.is_dir():
        path = path / DEFAULT_FILE
    if not path.is_file():
        raise RunFileError(f"{path}: no multi-app run file there")
    return path.resolve()


def load(given: str | Path) -> RunFile:
    path = locate(given)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RunFileError(f"{path}: not readable YAML: {exc}") from None
    return parse(data, path)


def parse(data: Any, path: Path) -> RunFile:
    where = str(path)
    if not isinstance(data, dict):
        raise RunFileError(f"{where}: a multi-app run file is a mapping with version and apps")
    unknown = sorted(set(data) - {"version", "common", "apps"})
    if unknown:
        raise RunFileError(f"{where}: field {unknown[0]}: not a field of a multi-app run file")
    if data.get("version") != 1:
        raise RunFileError(f"{where}: field version: must be 1, got {data.get('version')!r}")
    common = data.get("common") or {}
    if not isinstance(common, dict):
        raise RunFileError(f"{where}: field common: must be a mapping")
    apps = data.get("apps")
    if not isinstance(apps, list) or not apps:
        raise RunFileError(f"{where}: field apps: must list at least one app")
    warnings: list[str] = []
    base = path.parent
    runs = [_app(where, f"apps[{i}]", common, app, base, warnings) for i, app in enumerate(apps)]
    ids = [r.app_id for r in runs]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise RunFileError(f"{where}: field apps: app id {duplicate!r} appears twice")
    return RunFile(path, tuple(runs), tuple(warnings))


def _app(
    where: str,
    at: str,
    common: Mapping[str, Any],
    app: Any,
    base: Path,
    warnings: list[str],
) -> AppRun:
    if not isinstance(app, dict):
        raise RunFileError(f"{where}: field {at}: must be a mapping")
    if "appDirPath" not in app:
        raise RunFileError(f"{where}: field {at}.appDirPath: required")
    app_dir = (base / str(app["appDirPath"])).resolve()
    if not app_dir.is_dir():
        raise RunFileError(f"{where}: field {at}.appDirPath: {app_dir} is not a folder")
    # An app's fields override the common ones; env merges, the app's winning.
    merged: dict[str, Any] = {**common, **app}
    merged["env"] = {**_env(where, "common.env", common), **_env(where, f"{at}.env", app)}
    for name in merged:
        if name in _REFUSED:
            raise RunFileError(f"{where}: field {_origin(at, app, name)}: {_REFUSED[name]}")
        if name not in _VALUE_FLAGS and name not in _SWITCHES and name not in _OWN:
            raise RunFileError(
                f"{where}: field {_origin(at, app, name)}: not a field of a multi-app run app"
            )
    app_id = str(merged.get("appID") or app_dir.name)
    args: list[str] = ["--app-id", app_id]
    for name, flag in _VALUE_FLAGS.items():
        if name in merged and merged[name] is not None:
            args += [flag, _scalar(where, _origin(at, app, name), merged[name])]
    if merged.get("runtimeWorkers") is not None:
        _check_workers(where, _origin(at, app, "runtimeWorkers"), merged["runtimeWorkers"])
    for name, flag in _SWITCHES.items():
        if _bool(where, _origin(at, app, name), merged.get(name, False)):
            args.append(flag)
    address = merged.get("appChannelAddress")
    if address is not None and str(address) not in _LOCAL_ADDRESSES:
        raise RunFileError(
            f"{where}: field {_origin(at, app, 'appChannelAddress')}: Tandem reaches the app on "
            f"127.0.0.1 only, got {address!r}"
        )
    args += _resources(where, at, common, app, base, app_dir, warnings)
    config = _config(common, app, base, app_dir)
    if config is not None:
        args += ["--config", str(config)]
    command = merged.get("command")
    if command is not None:
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            raise RunFileError(
                f"{where}: field {_origin(at, app, 'command')}: must be a list of strings"
            )
        if command:
            args += ["--", *command]
    return AppRun(
        app_id=app_id,
        app_dir=app_dir,
        args=tuple(args),
        env=merged["env"],
        app_log=_destination(where, at, app, merged, "appLogDestination", "fileAndConsole"),
        daprd_log=_destination(where, at, app, merged, "daprdLogDestination", "file"),
    )


def _origin(at: str, app: Mapping[str, Any], name: str) -> str:
    return f"{at}.{name}" if name in app else f"common.{name}"


def _env(where: str, at: str, holder: Mapping[str, Any]) -> dict[str, str]:
    env = holder.get("env") or {}
    if not isinstance(env, dict):
        raise RunFileError(f"{where}: field {at}: must be a mapping of names to values")
    # YAML reads `DEBUG: true` as a boolean; the process gets the text Dapr would give it.
    return {str(k): _text(v) for k, v in env.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _scalar(where: str, at: str, value: Any) -> str:
    if isinstance(value, dict | list):
        raise RunFileError(f"{where}: field {at}: must be a single value")
    return _text(value)


def _bool(where: str, at: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise RunFileError(f"{where}: field {at}: must be true or false, got {value!r}")


def _paths(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    # Dapr's resourcesPaths may also be one comma-separated string.
    return [p.strip() for p in str(value).split(",") if p.strip()]


def _resources(
    where: str,
    at: str,
    common: Mapping[str, Any],
    app: Mapping[str, Any],
    base: Path,
    app_dir: Path,
    warnings: list[str],
) -> list[str]:
    found: list[Path] = []
    for holder, label in ((common, "common"), (app, at)):
        if "resourcesPath" in holder:
            warnings.append(
                f"{where}: field {label}.resourcesPath is deprecated (as in Dapr); "
                "use resourcesPaths"
            )
            found += [base / p for p in _paths(holder["resourcesPath"])]
        if "resourcesPaths" in holder:
            found += [base / p for p in _paths(holder["resourcesPaths"])]
    if not found and (app_dir / ".dapr" / "resources").is_dir():
        found = [app_dir / ".dapr" / "resources"]
    out: list[str] = []
    for p in found:
        if not p.resolve().is_dir():
            raise RunFileError(f"{where}: resources path {p.resolve()} is not a folder")
        out += ["--resources-path", str(p.resolve())]
    return out


def _config(
    common: Mapping[str, Any], app: Mapping[str, Any], base: Path, app_dir: Path
) -> Path | None:
    given = app.get("configFilePath", common.get("configFilePath"))
    if given is not None:
        return (base / str(given)).resolve()
    conventional = app_dir / ".dapr" / "config.yaml"
    return conventional if conventional.is_file() else None


def _destination(
    where: str,
    at: str,
    app: Mapping[str, Any],
    merged: Mapping[str, Any],
    name: str,
    default: str,
) -> str:
    value = str(merged.get(name) or default)
    if value not in LOG_DESTINATIONS:
        raise RunFileError(
            f"{where}: field {_origin(at, app, name)}: must be one of "
            f"{', '.join(LOG_DESTINATIONS)}, got {value!r}"
        )
    return value


def _check_workers(where: str, field: str, value: object) -> None:
    """Refused here, by file and field, rather than by the app's own `tandem run`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RunFileError(
            f"{where}: field {field}: must be a whole number of runtime processes, "
            f"1 or more, got {value!r}"
        )
