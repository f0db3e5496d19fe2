"""Who a sidecar in a pod is, decided from what the API server says. Pure.

In a cluster, the sidecar's enrolment container (:mod:`tandem.k8s.enrol`) sends the control
plane its pod's projected ServiceAccount token (audience-bound, mounted by the injector)
with a CSR and the identity it claims. The control plane then:

1. sends the token to ``TokenReview`` (authentication.k8s.io/v1) with its own audience;
   :func:`review_decision` maps the answer to a :class:`ReviewedPod` or a refusal;
2. reads the pod the token is bound to; :func:`identity_decision` checks the pod's uid,
   its namespace and its app id (``dapr.io/app-id``, else Dapr's default, as the injector
   decided) against what the sidecar claims and returns the SPIFFE id to sign for;
3. mints the same credential ``tandem run`` mints self-hosted (:mod:`tandem.xds.enrolment`)
   for that node id, SPIFFE id and public key. Envoy presents it in its node metadata, so
   the ADS admission path is the one self-hosted uses, and a reconnect long after the
   token expired (a control-plane restart) still presents a valid credential.

The token is never logged nor repeated in an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tandem.k8s import annotations as ann
from tandem.k8s.admission import _fallback_app_id
from tandem.xds.ca import DEFAULT_TRUST_DOMAIN, spiffe_id
from tandem.xds.enrolment import IdentityRefusedError

DEFAULT_AUDIENCE = "tandem.io/controlplane"
_SA_PREFIX = "system:serviceaccount:"
# Set by the API server on tokens bound to a pod (projected volumes are).
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"


class ReviewUnavailableError(Exception):
    """The API server could not review the token now (try again later)."""


@dataclass(frozen=True, slots=True)
class EnrolRequest:
    """What a sidecar claims, with the proof (``token``) and its CSR."""

    node_id: str
    app_id: str
    namespace: str
    csr: str
    token: str = field(repr=False)
    trust_domain: str = DEFAULT_TRUST_DOMAIN

    @classmethod
    def from_json(cls, message: Mapping[str, Any]) -> EnrolRequest:
        values = {}
        for name in ("node_id", "app_id", "namespace", "csr", "token"):
            value = message.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"the enrolment request has no {name}")
            values[name] = value
        trust_domain = message.get("trust_domain") or DEFAULT_TRUST_DOMAIN
        if not isinstance(trust_domain, str):
            raise ValueError("trust_domain must be a string")
        return cls(trust_domain=trust_domain, **values)

    def to_json(self) -> dict[str, str]:
        return {
            "node_id": self.node_id,
            "app_id": self.app_id,
            "namespace": self.namespace,
            "csr": self.csr,
            "token": self.token,
            "trust_domain": self.trust_domain,
        }


@dataclass(frozen=True, slots=True)
class ReviewedPod:
    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str


def token_review(token: str, audience: str) -> dict[str, Any]:
    """The TokenReview to create (its ``spec``)."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": [audience]},
    }


def _extra(user: Mapping[str, Any], key: str) -> str:
    values = (user.get("extra") or {}).get(key) or []
    return str(values[0]) if isinstance(values, list) and values else ""


def review_decision(review: Mapping[str, Any], audience: str) -> ReviewedPod:
    """The pod a TokenReview answer vouches for.

    IdentityRefusedError when the token is denied, bound to another audience, or not a
    pod's ServiceAccount token; ReviewUnavailableError when the API server reports an
    error without a verdict (the sidecar retries).
    """
    status = review.get("status") or {}
    if not status.get("authenticated"):
        error = str(status.get("error") or "")
        if error and "audience" in error.lower():
            raise IdentityRefusedError(f"refused: the token is not meant for audience {audience!r}")
        if error and not _looks_like_denial(error):
            raise ReviewUnavailableError(f"the API server could not review the token: {error}")
        raise IdentityRefusedError("refused: the API server does not accept the token")
    audiences = status.get("audiences")
    # An API server that reports audiences must name ours; one that reports none checked
    # the audience we asked for (or knows no audiences at all: then we cannot trust it).
    if not isinstance(audiences, list) or audience not in audiences:
        raise IdentityRefusedError(f"refused: the token is not meant for audience {audience!r}")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username.startswith(_SA_PREFIX) or username.count(":") != 3:
        raise IdentityRefusedError("refused: the token is not a ServiceAccount's")
    namespace, service_account = username.removeprefix(_SA_PREFIX).split(":")
    pod_name, pod_uid = _extra(user, POD_NAME_EXTRA), _extra(user, POD_UID_EXTRA)
    if not pod_name or not pod_uid:
        raise IdentityRefusedError(
            "refused: the token is not bound to a pod (mount the projected token the injector adds)"
        )
    return ReviewedPod(namespace, service_account, pod_name, pod_uid)


def _looks_like_denial(error: str) -> bool:
    # The authenticators' answers for a token that is simply not valid (expired, unknown
    # signer, deleted pod) as opposed to the API server failing to check.
    lowered = error.lower()
    return any(
        word in lowered
        for word in ("invalid", "expired", "not valid", "no longer", "unauthorized", "deleted")
    )


def pod_app_id(pod: Mapping[str, Any]) -> str:
    """The app id the injector gave this pod's sidecar."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if not ann.enabled(annotations):
        raise IdentityRefusedError("refused: the pod is not annotated dapr.io/enabled")
    try:
        spec = ann.parse({str(k): str(v) for k, v in annotations.items()}, _fallback_app_id(pod))
    except ValueError as exc:
        raise IdentityRefusedError(f"refused: the pod's annotations: {exc}") from None
    return spec.app_id


def identity_decision(request: EnrolRequest, reviewed: ReviewedPod, pod: Mapping[str, Any]) -> str:
    """The SPIFFE id to sign for, if the claim matches the reviewed token and its pod."""
    metadata = pod.get("metadata") or {}
    if metadata.get("uid") != reviewed.pod_uid or metadata.get("name") != reviewed.pod_name:
        raise IdentityRefusedError("refused: the token's pod no longer exists")
    if request.namespace != reviewed.namespace:
        raise IdentityRefusedError(
            f"refused: the sidecar claims namespace {request.namespace!r}, its token is "
            f"from {reviewed.namespace!r}"
        )
    if request.node_id != reviewed.pod_name:
        raise IdentityRefusedError(
            f"refused: the sidecar claims node {request.node_id!r}, its token is from pod "
            f"{reviewed.pod_name!r}"
        )
    app_id = pod_app_id(pod)
    if request.app_id != app_id:
        raise IdentityRefusedError(
            f"refused: the sidecar claims app id {request.app_id!r}, its pod is {app_id!r}"
        )
    return spiffe_id(request.trust_domain, reviewed.namespace, app_id)
