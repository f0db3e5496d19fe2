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
from pathlib import Path

from tandem.resources import Configuration, ResourceError
from tandem.resources.loader import invocation_files, load_configuration, signature
from tandem.xds.ir import DEFAULT_TRUST_DOMAIN, Sidecar
from tandem.xds.registry import Registry

log = logging.getLogger(__name__)

# Polling, not inotify: resources may live anywhere (a mounted volume, a symlinked folder),
# and a stat of a few files per sidecar is cheap. Half of the 2 s the issue allows.
POLL_SECONDS = 0.25

_Signature = tuple[tuple[str, int, int], ...]


class ResourceWatcher:
    def __init__(self, registry: Registry, poll_seconds: float = POLL_SECONDS) -> None:
        self._registry = registry
        self._poll = poll_seconds
        self._seen: dict[str, _Signature] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("watching resources failed")
            await asyncio.sleep(self._poll)

    async def check(self) -> None:
        sidecars = [s for s in self._registry.mesh().sidecars if s.resources_paths or s.config_path]
        live = {s.node_id for s in sidecars}
        for node_id in set(self._seen) - live:
            del self._seen[node_id]
        for sidecar in sidecars:
            await self._check_one(sidecar)

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
        if self._registry.replace_sidecar(updated):
            log.info(
                "resources reloaded",
                extra={
                    "node": sidecar.node_id,
                    "app_id": sidecar.app_id,
                    "files": [f for f, _ in files],
                },
            )


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
        return sidecar
    return dataclasses.replace(sidecar, access_control=access)
