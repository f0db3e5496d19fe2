"""The Envoy bootstrap of one `tandem run` sidecar, made in a short-lived process.

    python -m tandem.cli.envoy_config   (two JSON lines on stdin; see :func:`main`)

Making it loads what the supervisor never needs again: the workload key and its CSR
(``cryptography``), the Configuration and resource parsers, secret stores for HTTPEndpoint
headers, trace export settings. `tandem run` stays up for the app's whole life, so it
starts this step beside the runtime (both load while the other works) and keeps none of
that weight. The answer is one JSON line on stdout: ``{"ok": true}`` once ``envoy.json``
is written, or ``{"error": "..."}`` worded for the person who ran `tandem run`.

On a cold start the control plane is starting meanwhile: everything that does not need it
(imports, the workload key, the resources) is done before the second line, which says the
control plane answers and where; only the credential (signed with the control plane's
enrolment key) and the bootstrap's xDS address wait for it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


class EnvoyConfigError(Exception):
    """A setting that stops the sidecar from starting; the message says what and where."""


def security_metadata(
    *,
    home: Path,
    run_dir: Path,
    sidecar_id: str,
    app_id: str,
    namespace: str | None,
    config: Path | None,
    control_plane_ready: Callable[[], object],
) -> dict[str, object]:
    """Identity (trust domain, key, credential) and API tokens for the node metadata.

    The key pair is made here, next to the sidecar; the control plane sees only the CSR
    and the credential minted for this node id, SPIFFE id and key (see
    ``tandem.xds.enrolment``). The app's ``--config`` contributes its accessControl
    (and trust domain) but not mTLS, which is the control plane's mesh-wide setting.
    """
    from tandem.resources import ResourceError, load_configuration
    from tandem.xds.ca import DEFAULT_TRUST_DOMAIN, ca_dir, spiffe_id
    from tandem.xds.configuration_metadata import trust_domain as trust_domain_of
    from tandem.xds.enrolment import EnrolmentKey, WorkloadKey

    out: dict[str, object] = {}
    trust_domain = DEFAULT_TRUST_DOMAIN
    if config is not None:
        try:
            configuration = load_configuration(config)
        except ResourceError as exc:
            raise EnvoyConfigError(f"--config: {exc}") from exc
        # Its access control itself goes with the rest (observability.node_metadata).
        trust_domain = trust_domain_of(configuration)
        out["config_path"] = str(config.resolve())  # watched (hot reload)
    key = WorkloadKey.generate()
    key_path = run_dir / "workload.key"
    key.write_key(key_path)
    spiffe = spiffe_id(trust_domain, namespace or "default", app_id)
    control_plane_ready()  # its enrolment key exists from here on
    try:
        enrolment = EnrolmentKey.load(ca_dir(home))
    except OSError as exc:
        raise EnvoyConfigError(f"cannot enrol the sidecar with the control plane: {exc}") from exc
    out.update(
        trust_domain=trust_domain,
        key_path=str(key_path),
        csr=key.csr_pem,
        credential=enrolment.mint(sidecar_id, spiffe, key.csr_pem),
    )
    # Dapr's variables, read from `tandem run`'s environment as daprd reads its own.
    for variable, key_name in (
        ("DAPR_API_TOKEN", "dapr_api_token"),
        ("APP_API_TOKEN", "app_api_token"),
    ):
        token = os.environ.get(variable)
        if token:
            out[key_name] = token
    return out


def endpoint_secrets(
    resources: Sequence[Path], *, app_id: str, namespace: str | None, home: Path
) -> dict[str, object]:
    """HTTPEndpoint secretKeyRef values for the control plane, in the owner-only
    bootstrap only (tandem.blocks.secrets.endpoints)."""
    from tandem.blocks.secrets.endpoints import endpoint_secrets as resolve
    from tandem.resources import ResourceError

    try:
        found = resolve(resources, app_id=app_id, namespace=namespace, home=home)
    except (ResourceError, ValueError) as exc:
        raise EnvoyConfigError(str(exc)) from exc
    return {"http_endpoint_secrets": found} if found else {}


def invocation_metadata(paths: Sequence[Path], config: Path | None = None) -> dict[str, object]:
    """The Resiliency and HTTPEndpoint documents among the resources, for the node
    metadata: the control plane parses them with the runtime's parser and filters them for
    this app, so invocations follow the caller's ``targets.apps`` and reach its HTTP
    endpoints. Only those documents travel; the runtime has already validated them. The
    paths go too: the control plane watches them (hot reload)."""
    from tandem.resources import ResourceError, load_configuration
    from tandem.resources.loader import invocation_files
    from tandem.resources.middleware import check_pipelines

    try:
        files = invocation_files(paths)
        if config is not None:
            # The --config's HTTP middleware must resolve here, not only in the control plane.
            check_pipelines(load_configuration(config), files)
    except (ResourceError, OSError) as exc:
        raise EnvoyConfigError(str(exc)) from exc
    out: dict[str, object] = {"resources_paths": [str(p.resolve()) for p in paths]}
    if files:
        out["resources"] = [{"file": f, "yaml": text} for f, text in files]
    return out


def make(request: Mapping[str, Any], control_plane: Callable[[], str]) -> Path:
    """Write the sidecar's ``envoy.json`` from ``request`` (what `tandem run` knows: ids,
    paths, ports and the node metadata it made itself); returns its path.

    ``control_plane`` returns the control plane's xDS address once it answers (blocking
    until then)."""
    from tandem.cli import observability
    from tandem.envoy.bootstrap import render_bootstrap
    from tandem.xds.ca import write_private_file

    home = Path(request["home"])
    run_dir = Path(request["run_dir"])
    config = Path(request["config"]) if request.get("config") else None
    resources = [Path(p) for p in request["resources"]]
    app_id: str = request["app_id"]
    namespace: str | None = request.get("namespace")
    metadata: dict[str, object] = dict(request["metadata"])
    metadata.update(invocation_metadata(resources, config))
    metadata.update(endpoint_secrets(resources, app_id=app_id, namespace=namespace, home=home))
    try:
        metadata.update(observability.node_metadata(config, run_dir))
    except observability.ObservabilityError as exc:
        raise EnvoyConfigError(str(exc)) from exc
    ads_address = ""

    def control_plane_ready() -> None:
        nonlocal ads_address
        ads_address = control_plane()

    metadata.update(
        security_metadata(
            home=home,
            run_dir=run_dir,
            sidecar_id=request["sidecar_id"],
            app_id=app_id,
            namespace=namespace,
            config=config,
            control_plane_ready=control_plane_ready,
        )
    )
    bootstrap = render_bootstrap(
        node_id=request["sidecar_id"],
        app_id=app_id,
        metadata=metadata,
        ads_address=ads_address,
        runtime_socket=Path(request["runtime_socket"]),
        admin_socket=Path(request["admin_socket"]),
        runtime_http_socket=Path(request["runtime_http_socket"]),
        worker_sockets=[(Path(a), Path(b)) for a, b in request.get("worker_sockets", ())],
    )
    path = run_dir / "envoy.json"
    write_private_file(path, json.dumps(bootstrap).encode())
    return path


class _ControlPlaneGone(Exception):
    pass


def _read_control_plane() -> str:
    """The second line: ``{"ads_address": ...}`` once the control plane answers."""
    line = sys.stdin.readline()
    if not line:
        raise _ControlPlaneGone  # `tandem run` gave up (its control plane failed)
    return str(json.loads(line)["ads_address"])


def main() -> int:
    """Line 1: the request, as soon as `tandem run` has chosen ports and paths. Line 2:
    ``{"ads_address": ...}`` when the control plane answers (at once when it was running)."""
    try:
        request = json.loads(sys.stdin.readline())
        make(request, _read_control_plane)
    except _ControlPlaneGone:
        return 3
    except EnvoyConfigError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
