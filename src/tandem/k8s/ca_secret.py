"""The mesh's CA root and enrolment key kept in a Secret of the control plane's namespace.

Every replica must sign with the same root and verify credentials with the same enrolment
key, so in a cluster they live in one Secret (``<release>-ca``: ``root.pem``, ``root.key``,
``enrolment.key``) instead of ``$TANDEM_HOME/ca/``. The first replica to start creates it;
a replica that loses that race (409 Conflict) reads the winner's. Reading and building the
Secret's data are pure; :func:`load_or_create` is the I/O edge (lightkube).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.xds.ca import ROOT_RENEW_BEFORE, CertificateAuthority, public_key_der
from tandem.xds.enrolment import EnrolmentKey

log = logging.getLogger("tandem.k8s.ca_secret")

ROOT_CERT = "root.pem"
ROOT_KEY = "root.key"
ENROLMENT = "enrolment.key"


def secret_data(ca: CertificateAuthority, enrolment: EnrolmentKey) -> dict[str, str]:
    """The Secret's ``data`` (base64, as the API stores it)."""
    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = {ROOT_CERT: ca.trust_bundle_pem.encode(), ROOT_KEY: key_pem, ENROLMENT: enrolment.secret}
    return {name: base64.b64encode(value).decode() for name, value in raw.items()}


def from_secret(secret: Mapping[str, Any]) -> tuple[CertificateAuthority, EnrolmentKey] | None:
    """The root and key a Secret holds; None when absent, damaged or about to expire."""
    data = secret.get("data") or {}
    try:
        raw = {
            name: base64.b64decode(data[name], validate=True)
            for name in (ROOT_CERT, ROOT_KEY, ENROLMENT)
        }
        cert = x509.load_pem_x509_certificate(raw[ROOT_CERT])
        key = serialization.load_pem_private_key(raw[ROOT_KEY], password=None)
        enrolment = EnrolmentKey(raw[ENROLMENT])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or len(enrolment.secret) != 32:
        return None
    if public_key_der(key.public_key()) != public_key_der(cert.public_key()):  # type: ignore[arg-type]
        return None
    ca = CertificateAuthority(key, cert)
    if ca.expires_within(ROOT_RENEW_BEFORE):
        return None
    return ca, enrolment


async def load_or_create(
    client: Any, namespace: str, name: str
) -> tuple[CertificateAuthority, EnrolmentKey]:
    """The Secret's root and key, creating the Secret (or replacing a damaged one) if need
    be. ``client`` is a ``lightkube.AsyncClient``; ApiError other than 404/409 propagates."""
    from lightkube import ApiError
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Secret

    for _ in range(5):
        try:
            current = await client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            current = None
        if current is not None:
            found = from_secret({"data": current.data or {}})
            if found is not None:
                return found
        ca, enrolment = CertificateAuthority.generate(), EnrolmentKey.generate()
        secret = Secret(
            metadata=ObjectMeta(
                name=name,
                namespace=namespace,
                resourceVersion=current.metadata.resourceVersion if current else None,
                labels={"app.kubernetes.io/part-of": "tandem"},
            ),
            type="Opaque",
            data=secret_data(ca, enrolment),
        )
        try:
            if current is None:
                await client.create(secret)
            else:
                log.warning("replacing an unusable or expiring CA root", extra={"secret": name})
                await client.replace(secret)
        except ApiError as exc:
            if exc.status.code == 409:
                continue  # another replica wrote it first: use theirs
            raise
        log.info("CA root created", extra={"secret": name, "namespace": namespace})
        return ca, enrolment
    raise RuntimeError(f"the CA Secret {namespace}/{name} keeps changing under us")
