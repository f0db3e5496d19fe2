"""Workload identities on the control plane: admission, issue, rotation, and mTLS settings.

:class:`Identities` admits a sidecar only if its enrolment credential checks out (see
:mod:`tandem.xds.enrolment`), signs its CSR for the SPIFFE id the control plane computed,
and re-signs at half-life. The registry asks it for :class:`tandem.xds.ir.MeshSecurity`
whenever it translates, so a new certificate is just a new SDS ``default`` secret version.

mTLS is a mesh-wide setting, as in Dapr: :class:`MtlsSettings` comes from the control
plane's own Configuration (``python -m tandem.xds --config FILE``, or
``$TANDEM_HOME/config.yaml``), never from an app's ``--config``. On by default.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.resources import ResourceError, load_configuration
from tandem.xds.ca import (
    DEFAULT_CERT_TTL,
    DEFAULT_CLOCK_SKEW,
    CertificateAuthority,
    CsrError,
    IssuedCertificate,
    ca_dir,
    csr_public_key,
    load_or_create_ca,
    utcnow,
)
from tandem.xds.enrolment import EnrolmentKey, IdentityRefusedError
from tandem.xds.ir import MeshSecurity, Sidecar

log = logging.getLogger("tandem.xds.identity")

# Shorter certificates make rotation churn for nothing; tests use a few seconds.
MIN_CERT_TTL = dt.timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class MtlsSettings:
    enabled: bool = True
    workload_cert_ttl: dt.timedelta = DEFAULT_CERT_TTL
    allowed_clock_skew: dt.timedelta = DEFAULT_CLOCK_SKEW

    def __post_init__(self) -> None:
        if self.workload_cert_ttl < MIN_CERT_TTL:
            raise ValueError(f"workloadCertTTL must be at least {MIN_CERT_TTL.total_seconds():g}s")
        if self.allowed_clock_skew < dt.timedelta(0):
            raise ValueError("allowedClockSkew must not be negative")

    @classmethod
    def from_configuration(cls, path: Path) -> MtlsSettings:
        """``spec.mtls`` of the Configuration in ``path``; ResourceError if invalid.

        ``enabled`` left out means on: Tandem's default, unlike the parsed model's.
        """
        config = load_configuration(path)
        mtls = config.mtls
        try:
            return cls(
                enabled=mtls.enabled if _mentions_enabled(path) else True,
                workload_cert_ttl=mtls.workload_cert_ttl or DEFAULT_CERT_TTL,
                allowed_clock_skew=(
                    mtls.allowed_clock_skew
                    if mtls.allowed_clock_skew is not None
                    else DEFAULT_CLOCK_SKEW
                ),
            )
        except ValueError as exc:
            raise ResourceError(path, "spec.mtls", str(exc)) from None


def _mentions_enabled(path: Path) -> bool:
    """Whether the first Configuration in ``path`` sets ``spec.mtls.enabled`` at all."""
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "Configuration":
            mtls = (doc.get("spec") or {}).get("mtls")
            return isinstance(mtls, dict) and mtls.get("enabled") is not None
    return False


@dataclass(frozen=True, slots=True)
class _Workload:
    spiffe_id: str
    public_key: ec.EllipticCurvePublicKey
    certificate: IssuedCertificate


class Identities:
    """Admitted sidecars and their current certificates. Single-threaded (one event loop)."""

    def __init__(
        self,
        ca: CertificateAuthority,
        enrolment: EnrolmentKey,
        settings: MtlsSettings | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.ca = ca
        self.enrolment = enrolment
        self.settings = settings if settings is not None else MtlsSettings()
        self._clock = clock
        self._workloads: dict[str, _Workload] = {}

    @classmethod
    def ephemeral(cls, settings: MtlsSettings | None = None) -> Identities:
        """An in-memory root and enrolment key (tests, or a throwaway control plane)."""
        return cls(CertificateAuthority.generate(), EnrolmentKey.generate(), settings)

    @classmethod
    def load(cls, home: Path, settings: MtlsSettings | None = None) -> Identities:
        """The root and enrolment key persisted under ``home`` (self-hosted mode)."""
        directory = ca_dir(home)
        return cls(load_or_create_ca(directory), EnrolmentKey.load_or_create(directory), settings)

    def admit(self, sidecar: Sidecar, metadata: Mapping[str, Any]) -> IssuedCertificate:
        """Check the sidecar's credential and sign its CSR; IdentityRefusedError if not."""
        spiffe = sidecar.spiffe_id
        csr = metadata.get("csr")
        if not isinstance(csr, str) or not csr:
            raise IdentityRefusedError(
                f"refused a certificate for {spiffe}: the node metadata carries no CSR"
            )
        try:
            public_key = csr_public_key(csr)
        except CsrError as exc:
            raise IdentityRefusedError(f"refused a certificate for {spiffe}: {exc}") from None
        credential = metadata.get("credential")
        self.enrolment.verify(
            credential if isinstance(credential, str) else "", sidecar.node_id, spiffe, public_key
        )
        if sidecar.key_path is None:
            raise IdentityRefusedError(
                f"refused a certificate for {spiffe}: the node metadata names no key_path "
                "(where Envoy reads the private key)"
            )
        issued = self._issue(spiffe, public_key)
        self._workloads[sidecar.node_id] = _Workload(spiffe, public_key, issued)
        log.info(
            "certificate issued",
            extra={
                "node": sidecar.node_id,
                "spiffe_id": spiffe,
                "serial": f"{issued.serial:x}",
                "not_after": issued.not_after.isoformat(),
            },
        )
        return issued

    def _issue(self, spiffe: str, public_key: ec.EllipticCurvePublicKey) -> IssuedCertificate:
        return self.ca.sign(
            public_key,
            spiffe,
            ttl=self.settings.workload_cert_ttl,
            skew=self.settings.allowed_clock_skew,
            now=self._clock(),
        )

    def forget(self, node_id: str) -> None:
        self._workloads.pop(node_id, None)

    def certificate(self, node_id: str) -> IssuedCertificate | None:
        workload = self._workloads.get(node_id)
        return workload.certificate if workload is not None else None

    def next_rotation(self) -> dt.datetime | None:
        return min((w.certificate.rotate_at for w in self._workloads.values()), default=None)

    def rotate_due(self) -> list[str]:
        """Re-sign every certificate past its half-life; the node ids that got a new one."""
        now = self._clock()
        rotated = []
        for node_id, workload in sorted(self._workloads.items()):
            if workload.certificate.rotate_at <= now:
                issued = self._issue(workload.spiffe_id, workload.public_key)
                self._workloads[node_id] = _Workload(
                    workload.spiffe_id, workload.public_key, issued
                )
                rotated.append(node_id)
                log.debug(
                    "certificate rotated",
                    extra={"node": node_id, "serial": f"{issued.serial:x}"},
                )
        return rotated

    def security(self) -> MeshSecurity:
        return MeshSecurity(
            mtls=self.settings.enabled,
            trust_bundle_pem=self.ca.trust_bundle_pem,
            certificates={
                node_id: w.certificate.certificate_pem for node_id, w in self._workloads.items()
            },
            certificate_ttl=self.settings.workload_cert_ttl,
        )
