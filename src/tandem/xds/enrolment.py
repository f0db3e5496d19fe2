"""How a sidecar earns its identity in self-hosted mode: a key, a CSR and a credential.

Node metadata is self-asserted: anything that can reach the ADS port can claim any app id.
So the control plane signs a certificate for ``spiffe://td/ns/ns/app`` only when the
sidecar also presents a **credential** that ``tandem run`` minted for exactly that node id,
that SPIFFE id and that public key:

    credential = "v1." + base64url(HMAC-SHA256(enrolment key, node id ␀ SPIFFE id ␀ SPKI))

The enrolment key is 32 random bytes the control plane creates in
``$TANDEM_HOME/ca/enrolment.key`` (owner-only, next to the root key). ``tandem run`` reads
it, generates the sidecar's key pair next to the sidecar, and mints the credential for the
node id it just chose. The credential is therefore good for one sidecar start only: the
node id is random per start and the key pair is fresh, so a copied credential yields at
most a certificate for a key its thief does not hold. Reconnects of the same Envoy (after
a control-plane restart, say) present the same credential and are admitted again.

The trust boundary is the OS user owning ``$TANDEM_HOME``: whoever can read the enrolment
key could equally read the root key. A process without it cannot obtain a certificate.
The private key never leaves the sidecar's run directory: the CSR carries the public key,
and the SDS secret names the key file (``private_key.filename``), which Envoy reads itself.

Kubernetes: the same credential, minted by the control plane itself once the pod's
projected ServiceAccount token passed TokenReview and the pod's ``dapr.io/app-id`` matched
the claim (see :mod:`tandem.k8s.workload_identity`); the enrolment init container writes it
into Envoy's bootstrap.

Nothing here logs, and no error message repeats a credential or a key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.xds.ca import (
    CsrError,
    csr_public_key,
    ensure_private_dir,
    public_key_der,
    write_private_file,
)

ENROLMENT_KEY_FILE = "enrolment.key"
_VERSION = "v1"
_KEY_BYTES = 32


class IdentityRefusedError(PermissionError):
    """The control plane will not issue this sidecar a certificate; the message says why."""


def _digest(secret: bytes, node_id: str, spiffe: str, spki: bytes) -> str:
    message = b"\0".join((_VERSION.encode(), node_id.encode(), spiffe.encode(), spki))
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class EnrolmentKey:
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> EnrolmentKey:
        return cls(secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def load(cls, ca_directory: Path) -> EnrolmentKey:
        """The control plane's key, for ``tandem run``; OSError with a readable message."""
        path = ca_directory / ENROLMENT_KEY_FILE
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no enrolment key at {path}: the control plane creates it at start-up"
            ) from None
        if len(secret) != _KEY_BYTES:
            raise OSError(f"the enrolment key at {path} is damaged ({len(secret)} bytes)")
        return cls(secret)

    @classmethod
    def load_or_create(cls, ca_directory: Path) -> EnrolmentKey:
        """For the control plane: keep the key across restarts so live sidecars reconnect."""
        ensure_private_dir(ca_directory)
        try:
            return cls.load(ca_directory)
        except OSError:
            key = cls.generate()
            write_private_file(ca_directory / ENROLMENT_KEY_FILE, key.secret)
            return key

    def mint(self, node_id: str, spiffe: str, csr_pem: str) -> str:
        spki = public_key_der(csr_public_key(csr_pem))
        return f"{_VERSION}.{_digest(self.secret, node_id, spiffe, spki)}"

    def verify(
        self, credential: str, node_id: str, spiffe: str, public_key: ec.EllipticCurvePublicKey
    ) -> None:
        """Raise IdentityRefusedError unless ``credential`` was minted for exactly these."""
        if not credential:
            raise IdentityRefusedError(
                f"refused a certificate for {spiffe}: no enrolment credential in the node "
                "metadata; only a sidecar started by `tandem run` gets a workload identity"
            )
        version, _, mac = credential.partition(".")
        expected = _digest(self.secret, node_id, spiffe, public_key_der(public_key))
        if version != _VERSION or not hmac.compare_digest(mac.encode(), expected.encode()):
            raise IdentityRefusedError(
                f"refused a certificate for {spiffe}: the enrolment credential was not "
                f"issued for node {node_id!r}, this identity and this key (minted under "
                "another $TANDEM_HOME, or copied from another sidecar?)"
            )


@dataclass(frozen=True, slots=True)
class WorkloadKey:
    """A sidecar's key pair and CSR, made next to the sidecar (``tandem run``, tests)."""

    private_key_pem: bytes = field(repr=False)
    csr_pem: str

    @classmethod
    def generate(cls) -> WorkloadKey:
        key = ec.generate_private_key(ec.SECP256R1())
        # The CA ignores the CSR's subject and SANs; an empty request is all it needs.
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        return cls(
            private_key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
        )

    def write_key(self, path: Path) -> None:
        """The private key, owner-only; Envoy reads it from here (SDS names the file)."""
        write_private_file(path, self.private_key_pem)


__all__ = ["CsrError", "EnrolmentKey", "IdentityRefusedError", "WorkloadKey"]
