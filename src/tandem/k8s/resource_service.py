"""``tandem.resources.v1.Resources/Watch``: a sidecar's namespace's ``dapr.io`` objects, as
files, from the control plane's watches (Kubernetes).

The runtime reads its Components, Configurations, Subscriptions, Resiliencies and
HTTPEndpoints from a ``--resources-path`` and hot-reloads it, as self-hosted. In a pod
that folder is written by the ``tandem-resources`` sidecar (:mod:`tandem.k8s.resources_sync`)
from this stream: the full set of (file name, YAML) of the namespace on connect and after
every change. Scopes are the runtime's loader's business, as with files.

Components may carry credentials, so the caller proves it is an enrolled sidecar of that
namespace: it presents its enrolment credential, CSR and claimed identity, checked like the
ADS admission (``EnrolmentKey.verify``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc
import yaml

from tandem.k8s.inject import runtime_file_name
from tandem.k8s.mesh_sources import document
from tandem.k8s.reflector import Reflector
from tandem.k8s.workload_identity import EnrolRequest
from tandem.placement import wire
from tandem.xds.ca import CsrError, csr_public_key, spiffe_id
from tandem.xds.enrolment import EnrolmentKey, IdentityRefusedError

log = logging.getLogger("tandem.k8s.resources")

SERVICE = "tandem.resources.v1.Resources"
METHOD = "Watch"
RUNTIME_KINDS = ("Component", "Configuration", "Subscription", "Resiliency", "HTTPEndpoint")


def runtime_files(objects: Iterable[Mapping[str, Any]], namespace: str) -> list[list[str]]:
    """[file name, YAML] of every runtime kind's object in ``namespace``, sorted."""
    out = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") in RUNTIME_KINDS and meta.get("namespace") == namespace:
            name = runtime_file_name(str(obj["kind"]), str(meta.get("name")))
            out.append([name, yaml.safe_dump(document(obj), sort_keys=True)])
    return sorted(out)


def authorise(enrolment: EnrolmentKey, message: Mapping[str, Any]) -> str:
    """The namespace the caller may read; IdentityRefusedError or ValueError otherwise."""
    claim = EnrolRequest.from_json({**message, "token": message.get("credential")})
    try:
        key = csr_public_key(claim.csr)
    except CsrError as exc:
        raise IdentityRefusedError(f"refused: {exc}") from None
    spiffe = spiffe_id(claim.trust_domain, claim.namespace, claim.app_id)
    enrolment.verify(claim.token, claim.node_id, spiffe, key)
    return claim.namespace


class ResourceService:
    def __init__(
        self,
        enrolment: EnrolmentKey,
        reflectors: Callable[[], Iterable[Reflector]],
        changed: Callable[[], asyncio.Event],
    ) -> None:
        self._enrolment = enrolment
        self._reflectors = reflectors
        self._changed = changed

    def _files(self, namespace: str) -> list[list[str]]:
        objects = [o for r in self._reflectors() for o in r.objects.values()]
        return runtime_files(objects, namespace)

    async def _watch(
        self,
        message: dict[str, Any],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            namespace = authorise(self._enrolment, message)
        except (IdentityRefusedError, ValueError) as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            return
        sent: list[list[str]] | None = None
        while True:
            event = self._changed()
            files = self._files(namespace)
            if files != sent:
                sent = files
                yield {"files": files}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 5.0)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_stream_rpc_method_handler(
            self._watch, request_deserializer=wire.decode, response_serializer=wire.encode
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),)
        )
