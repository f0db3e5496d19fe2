"""``tandem.identity.v1.Enrolment/Enrol`` on the control plane's gRPC server (Kubernetes).

One unary JSON call (the placement protocol's encoding): an :class:`EnrolRequest` in,
``{"credential", "spiffe_id"}`` out. The decisions are :mod:`tandem.k8s.workload_identity`'s;
this module does the API calls (TokenReview, then a GET of the token's pod) with lightkube
and maps the outcomes to gRPC codes: PERMISSION_DENIED for a refusal (the message says why),
UNAVAILABLE when the API server cannot answer (the enrolment container retries).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import grpc

from tandem.k8s.workload_identity import (
    EnrolRequest,
    ReviewUnavailableError,
    identity_decision,
    review_decision,
    token_review,
)
from tandem.placement import wire
from tandem.xds.ca import CsrError, csr_public_key
from tandem.xds.enrolment import EnrolmentKey, IdentityRefusedError

log = logging.getLogger("tandem.k8s.enrol")

SERVICE = "tandem.identity.v1.Enrolment"
METHOD = "Enrol"


class ClusterApi(Protocol):
    async def review(self, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class LightkubeApi:
    """The two API calls, through a ``lightkube.AsyncClient``."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def review(self, body: Mapping[str, Any]) -> dict[str, Any]:
        from lightkube.resources.authentication_v1 import TokenReview

        try:
            answer = await self._client.create(TokenReview.from_dict(dict(body)))
        except Exception as exc:
            # Forbidden (RBAC), a timeout, a refused connection: no verdict on the token.
            raise ReviewUnavailableError(f"TokenReview failed: {_short(exc)}") from None
        result: dict[str, Any] = answer.to_dict()
        return result

    async def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Pod

        try:
            found = await self._client.get(Pod, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise ReviewUnavailableError(f"reading the pod failed: {_short(exc)}") from None
        except Exception as exc:
            raise ReviewUnavailableError(f"reading the pod failed: {_short(exc)}") from None
        result: dict[str, Any] = found.to_dict()
        return result


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class EnrolmentService:
    def __init__(self, api: ClusterApi, enrolment: EnrolmentKey, audience: str) -> None:
        self._api = api
        self._enrolment = enrolment
        self._audience = audience

    async def enrol(self, message: Mapping[str, Any]) -> dict[str, str]:
        """The credential for this request; IdentityRefusedError, ReviewUnavailableError or
        ValueError (malformed request) otherwise."""
        request = EnrolRequest.from_json(message)
        try:
            csr_public_key(request.csr)
        except CsrError as exc:
            raise IdentityRefusedError(f"refused: {exc}") from None
        reviewed = review_decision(
            await self._api.review(token_review(request.token, self._audience)), self._audience
        )
        pod = await self._api.pod(reviewed.namespace, reviewed.pod_name)
        if pod is None:
            raise IdentityRefusedError("refused: the token's pod no longer exists")
        spiffe = identity_decision(request, reviewed, pod)
        credential = self._enrolment.mint(request.node_id, spiffe, request.csr)
        log.info(
            "sidecar enrolled",
            extra={"node": request.node_id, "spiffe_id": spiffe, "sa": reviewed.service_account},
        )
        return {"credential": credential, "spiffe_id": spiffe}

    async def _handle(
        self,
        message: dict[str, Any],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> dict[str, str]:
        try:
            return await self.enrol(message)
        except IdentityRefusedError as exc:
            log.warning(
                "enrolment refused", extra={"node": message.get("node_id"), "error": str(exc)}
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except ReviewUnavailableError as exc:
            log.warning(
                "enrolment deferred", extra={"node": message.get("node_id"), "error": str(exc)}
            )
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable: abort raises")

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            self._handle, request_deserializer=wire.decode, response_serializer=wire.encode
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),)
        )
