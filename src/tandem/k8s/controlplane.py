"""The control plane's Kubernetes parts (``python -m tandem.xds --kubernetes``).

In a cluster the control plane keeps its CA root and enrolment key in a Secret (shared by
every replica, :mod:`tandem.k8s.ca_secret`) and enrols sidecars by their projected
ServiceAccount tokens (:mod:`tandem.k8s.enrol_service`). One client, lightkube, for every
API call: it is typed, asyncio-native, and already the client of ``secretstores.kubernetes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tandem.k8s import ca_secret
from tandem.k8s.enrol_service import EnrolmentService, LightkubeApi
from tandem.k8s.ha import LeaderOnly, label_self, write_epoch
from tandem.k8s.leader import LeaderElection, run_election
from tandem.k8s.resource_service import ResourceService
from tandem.k8s.watchers import Watches, run_watchers
from tandem.k8s.workload_identity import DEFAULT_AUDIENCE
from tandem.placement.service import PlacementService
from tandem.xds.identity import Identities, MtlsSettings
from tandem.xds.registry import Registry

KUBERNETES_ENV = "TANDEM_KUBERNETES"
DEFAULT_CA_SECRET = "tandem-ca"
DEFAULT_LEASE = "tandem-controlplane"
log = logging.getLogger("tandem.k8s.controlplane")


def own_namespace() -> str:
    """The pod's namespace (downward API), else the service account's, else default."""
    namespace = os.environ.get("POD_NAMESPACE")
    if namespace:
        return namespace
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def api_client() -> Any:
    """A ``lightkube.AsyncClient`` from the in-cluster account or $KUBECONFIG."""
    from lightkube import AsyncClient, KubeConfig

    # One line per API call at info (watches included) would drown the control plane's log.
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return AsyncClient(config=KubeConfig.from_env(), namespace=own_namespace())


@dataclass(slots=True)
class ClusterParts:
    client: Any
    identities: Identities
    enrolment: EnrolmentService
    election: LeaderElection
    watches: Watches
    resources: ResourceService
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    placement_started: bool = False
    lost: bool = False

    def leading(self) -> bool:
        return self.election.leading and self.placement_started

    def interceptors(self) -> tuple[grpc.aio.ServerInterceptor, ...]:
        return (LeaderOnly(self.leading),)

    def start(
        self, registry: Registry, placement: PlacementService, home: Path, stop: asyncio.Event
    ) -> None:
        """The watches that feed ``registry`` (tandem.k8s.watchers), and the election that
        starts ``placement`` on this replica once it leads (tandem.k8s.ha)."""
        self.tasks.append(
            asyncio.create_task(
                run_watchers(self.client, registry, self.watches), name="k8s-watchers"
            )
        )
        self.tasks.append(
            asyncio.create_task(self._elect(placement, home, stop), name="k8s-election")
        )

    async def _elect(self, placement: PlacementService, home: Path, stop: asyncio.Event) -> None:
        election = self.election
        pod = os.environ.get("POD_NAME")
        if pod:
            # A restarted former leader must not keep attracting placement calls.
            try:
                await label_self(self.client, election.namespace, pod, leading=False)
            except Exception as exc:
                log.warning("cannot clear the leader label", extra={"error": str(exc)[:300]})

        async def on_change(leading: bool) -> None:
            if leading:
                await asyncio.to_thread(write_epoch, home, election.transitions)
                await placement.start()
                self.placement_started = True
                if pod:
                    await label_self(self.client, election.namespace, pod, leading=True)
            else:
                self.lost = True
                stop.set()

        await run_election(self.client, election, on_change)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()


async def cluster_parts(
    settings: MtlsSettings,
    *,
    ca_secret_name: str,
    lease_name: str = DEFAULT_LEASE,
    audience: str = DEFAULT_AUDIENCE,
) -> ClusterParts:
    client = api_client()
    try:
        ca, key = await ca_secret.load_or_create(client, own_namespace(), ca_secret_name)
    except BaseException:
        await client.close()
        raise
    identities = Identities(ca, key, settings)
    election = LeaderElection(
        os.environ.get("POD_NAME") or socket.gethostname(), lease_name, own_namespace()
    )
    watches = Watches()
    return ClusterParts(
        client,
        identities,
        EnrolmentService(LightkubeApi(client), key, audience),
        election,
        watches,
        ResourceService(key, watches.resources.values, watches.updates.current),
    )
