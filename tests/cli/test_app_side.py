"""`tandem run`'s app-facing flags: parsing, API logging settings, files made before Envoy."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from tandem.cli.app_side import (
    AppSideError,
    AppSideOptions,
    api_log,
    envoy_args,
    prepare,
    socket_paths,
)
from tandem.cli.main import _parser, _run_options


def _options(*flags: str) -> AppSideOptions:
    return _run_options(_parser().parse_args(["run", "--app-id", "a", *flags]), "a").app_flags


def test_flags_default_as_in_dapr_run() -> None:
    options = _options()

    assert (
        options.app_health_check_path,
        options.app_health_probe_interval,
        options.app_health_probe_timeout,
        options.app_health_threshold,
    ) == ("/healthz", 5.0, 500.0, 3)
    assert options.app_max_concurrency is None and not options.enable_app_health_check


def test_a_max_concurrency_below_one_means_no_limit_as_in_dapr() -> None:
    assert _options("--app-max-concurrency", "-1").app_max_concurrency is None
    assert _options("--app-max-concurrency", "8").app_max_concurrency == 8


def test_envoy_runs_one_worker_unless_told_and_one_under_a_concurrency_limit() -> None:
    assert envoy_args(_options()) == ["--concurrency", "1"]
    assert envoy_args(_options("--envoy-concurrency", "4")) == ["--concurrency", "4"]
    limited = _options("--envoy-concurrency", "4", "--app-max-concurrency", "8")
    assert envoy_args(limited) == ["--concurrency", "1"]


def test_a_zero_health_threshold_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _options("--app-health-threshold", "0")

    assert "--app-health-threshold: must be above 0" in capsys.readouterr().err


def _config(tmp_path: Path, api_logging: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\n"
        f"spec:\n  logging:\n    apiLogging: {api_logging}\n"
    )
    return path


def test_api_logging_comes_from_the_flag_or_the_configuration(tmp_path: Path) -> None:
    quiet = _config(tmp_path, "{enabled: false, omitHealthChecks: true, obfuscateURLs: true}")

    assert api_log(AppSideOptions(), quiet, tmp_path, "a") is None
    log = api_log(AppSideOptions(enable_api_logging=True), quiet, tmp_path, "a")
    assert log is not None and log.omit_health_checks and log.obfuscate_urls
    assert log.path == tmp_path / "a.api.log"
    on = _config(tmp_path, "{enabled: true}")
    assert api_log(AppSideOptions(), on, tmp_path, "a") is not None


def test_the_api_log_is_created_private(tmp_path: Path) -> None:
    log = api_log(AppSideOptions(enable_api_logging=True), None, tmp_path / "logs", "a")

    prepare(AppSideOptions(), "a", log, tmp_path)

    assert log is not None and stat.S_IMODE(log.path.stat().st_mode) == 0o600


def test_socket_directory_must_exist_and_stale_sockets_are_removed(tmp_path: Path) -> None:
    missing = AppSideOptions(unix_domain_socket=tmp_path / "nope")
    with pytest.raises(AppSideError, match="not a directory"):
        prepare(missing, "a", None, tmp_path)

    options = AppSideOptions(unix_domain_socket=tmp_path)
    http_path, grpc_path = socket_paths(options, "a") or ()
    assert (http_path.name, grpc_path.name) == ("dapr-a-http.socket", "dapr-a-grpc.socket")
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(http_path))
    prepare(options, "a", None, tmp_path)
    assert not http_path.exists()

    grpc_path.write_text("not a socket")
    with pytest.raises(AppSideError, match="exists and is not a socket"):
        prepare(options, "a", None, tmp_path)
