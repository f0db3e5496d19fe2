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
from dataclasses import dataclass, field
from typing import Any

from tandem.k8s import ca_secret
from tandem.k8s.enrol_service import EnrolmentService, LightkubeApi
from tandem.k8s.watchers import run_watchers
from tandem.k8s.workload_identity import DEFAULT_AUDIENCE
from tandem.xds.identity import Identities, MtlsSettings
from tandem.xds.registry import Registry

KUBERNETES_ENV = "TANDEM_KUBERNETES"
DEFAULT_CA_SECRET = "tandem-ca"


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
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, registry: Registry) -> None:
        """The watches that feed ``registry`` (tandem.k8s.watchers)."""
        self.tasks.append(
            asyncio.create_task(run_watchers(self.client, registry), name="k8s-watchers")
        )

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()


async def cluster_parts(
    settings: MtlsSettings, *, ca_secret_name: str, audience: str = DEFAULT_AUDIENCE
) -> ClusterParts:
    client = api_client()
    try:
        ca, key = await ca_secret.load_or_create(client, own_namespace(), ca_secret_name)
    except BaseException:
        await client.close()
        raise
    identities = Identities(ca, key, settings)
    return ClusterParts(client, identities, EnrolmentService(LightkubeApi(client), key, audience))
