"""Hot reload, control-plane side: each live sidecar's ``--resources-path`` is watched and
its Resiliency and HTTPEndpoint documents re-read when a file changes, is added or goes;
its ``--config`` too, for ``accessControl`` (the RBAC of its inbound listener).

A valid change is pushed at once (only the resource types whose content changed reach the
Envoy: snapshot versions are content hashes). An invalid one changes nothing: the last
good documents stay and the file, field and reason are logged, once per edit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path

from tandem.resources import Configuration, ResourceError
from tandem.resources.httproute import HTTPRoute
from tandem.resources.loader import invocation_files, load_configuration, parse_text, signature
from tandem.resources.traffic_policy import BackendTrafficPolicy
from tandem.xds.ir import DEFAULT_TRUST_DOMAIN, Sidecar
from tandem.xds.oidc import DiscoveryError, jwks_uri
from tandem.xds.registry import Registry
from tandem.xds.translate.middleware import issuers_to_discover

log = logging.getLogger(__name__)

# Polling, not inotify: resources may live anywhere (a mounted volume, a symlinked folder),
# and a stat of a few files per sidecar is cheap. Half of the 2 s the issue allows.
POLL_SECONDS = 0.25

_Signature = tuple[tuple[str, int, int], ...]
# A failed OpenID discovery is tried again after this long (and logged once per reason).
DISCOVERY_RETRY_SECONDS = 5.0


class ResourceWatcher:
    def __init__(
        self,
        registry: Registry,
        poll_seconds: float = POLL_SECONDS,
        mesh_resources: Path | None = None,
    ) -> None:
        self._registry = registry
        self._poll = poll_seconds
        self._seen: dict[str, _Signature] = {}
        # $TANDEM_HOME/resources/: HTTPRoutes and BackendTrafficPolicies for every sidecar.
        self._mesh_path = mesh_resources
        self._mesh_seen: _Signature | None = None
        self._mesh_files: tuple[tuple[str, str], ...] = ()
        # issuer -> (when to try again, the last failure), for bearer middleware discovery.
        self._failed: dict[str, tuple[float, str]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("watching resources failed")
            await asyncio.sleep(self._poll)

    async def check(self) -> None:
        await self._check_mesh()
        sidecars = [
            s for s in self._registry.local_sidecars() if s.resources_paths or s.config_path
        ]
        live = {s.node_id for s in sidecars}
        for node_id in set(self._seen) - live:
            del self._seen[node_id]
        for sidecar in sidecars:
            await self._check_one(sidecar)
        for sidecar in self._registry.local_sidecars():
            if issuers_to_discover(sidecar):
                await self._discover(sidecar)

    async def _check_mesh(self) -> None:
        """Re-read the mesh-wide folder when it changed; give every sidecar its documents
        (a sidecar that joined since gets them at the next poll)."""
        if self._mesh_path is not None and self._mesh_path.is_dir():
            sig = await asyncio.to_thread(signature, [self._mesh_path])
            if sig != self._mesh_seen:
                self._mesh_seen = sig
                try:
                    files = await asyncio.to_thread(invocation_files, [self._mesh_path])
                    for sidecar in self._registry.local_sidecars():  # validate for everyone
                        sidecar.with_mesh_files(files)
                    self._mesh_files = files
                    for file, text in files:
                        for other in parse_text(text, file):
                            if not isinstance(other, HTTPRoute | BackendTrafficPolicy):
                                log.warning(
                                    "%s: %s %s is ignored: only HTTPRoute and "
                                    "BackendTrafficPolicy apply mesh-wide; put it in the "
                                    "--resources-path of the apps it is for",
                                    file,
                                    type(other).__name__,
                                    other.name,
                                )
                except (ResourceError, OSError) as exc:
                    log.warning(
                        "mesh-wide resources not reloaded, the last good ones stay: %s", exc
                    )
        for sidecar in self._registry.local_sidecars():
            if sidecar.mesh_files == self._mesh_files:
                continue
            try:
                updated = sidecar.with_mesh_files(self._mesh_files)
            except ResourceError as exc:
                log.warning(
                    "mesh-wide resources not applied to this sidecar: %s",
                    exc,
                    extra={"node": sidecar.node_id, "app_id": sidecar.app_id},
                )
                continue
            self._registry.replace_sidecar(updated)

    async def _discover(self, sidecar: Sidecar) -> None:
        """Find the JWKS URI of each issuer the sidecar's bearer middleware names."""
        issuers = issuers_to_discover(sidecar)
        if not issuers:
            return
        import httpx  # only for bearer middleware without jwksURL: most meshes never load it

        found = dict(sidecar.discovered_jwks)
        now = time.monotonic()
        async with httpx.AsyncClient() as client:
            for issuer in issuers:
                retry_at, last = self._failed.get(issuer, (0.0, ""))
                if now < retry_at:
                    continue
                try:
                    found[issuer] = await jwks_uri(issuer, client)
                except DiscoveryError as exc:
                    if str(exc) != last:
                        log.warning(
                            "bearer middleware: OpenID discovery failed, calls are refused "
                            "until it succeeds: %s",
                            exc,
                            extra={"node": sidecar.node_id, "app_id": sidecar.app_id},
                        )
                    self._failed[issuer] = (now + DISCOVERY_RETRY_SECONDS, str(exc))
                    continue
                self._failed.pop(issuer, None)
        if len(found) > len(sidecar.discovered_jwks):
            current = self._registry.mesh().get(sidecar.node_id) or sidecar
            self._registry.replace_sidecar(
                dataclasses.replace(current, discovered_jwks=tuple(sorted(found.items())))
            )

    async def _check_one(self, sidecar: Sidecar) -> None:
        paths = [Path(p) for p in sidecar.resources_paths]
        config = Path(sidecar.config_path) if sidecar.config_path else None
        sig = await asyncio.to_thread(signature, [*paths, *([config] if config else [])])
        if self._seen.get(sidecar.node_id) == sig:
            return
        # A first look reads too: a file may have changed since `tandem run` read it.
        self._seen[sidecar.node_id] = sig
        try:
            files = await asyncio.to_thread(invocation_files, paths)
            updated = sidecar.with_resource_files(files)
            if config is not None:
                updated = _with_access_control(
                    updated, await asyncio.to_thread(load_configuration, config)
                )
            if updated == sidecar and files == sidecar.resource_files:
                return
        except (ResourceError, OSError) as exc:
            log.warning(
                "resources not reloaded, the last good ones stay: %s",
                exc,
                extra={"node": sidecar.node_id, "app_id": sidecar.app_id},
            )
            return
        self._registry.reload_sidecar(updated)


def _with_access_control(sidecar: Sidecar, config: Configuration) -> Sidecar:
    access = config.access_control
    trust_domain = access.trust_domain if access is not None else DEFAULT_TRUST_DOMAIN
    if trust_domain != sidecar.trust_domain:
        # The workload certificate names the trust domain: that takes a new identity.
        log.warning(
            "%s: spec.accessControl.trustDomain: a new trust domain (%s) needs a restart "
            "of the sidecar; its access control is not reloaded",
            sidecar.config_path,
            trust_domain,
            extra={"node": sidecar.node_id},
        )
        return sidecar.with_pipelines(config.http_pipeline, config.app_http_pipeline)
    updated = dataclasses.replace(sidecar, access_control=access)
    # Its HTTP middleware pipelines (translate/middleware.py).
    return updated.with_pipelines(config.http_pipeline, config.app_http_pipeline)
