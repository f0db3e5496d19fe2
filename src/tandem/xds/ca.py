"""The mesh's certificate authority: a root that signs workload certificates (X.509-SVIDs).

Pure apart from :func:`load_or_create_ca` (the I/O edge): signing takes the CSR, the
identity the control plane decided on and the time, and returns PEM text.

- Keys are ECDSA P-256 everywhere: Envoy validates RSA and NIST-curve EC leaves only, so
  Ed25519 (Dapr's default) is out.
- A workload certificate carries exactly one URI SAN, the SPIFFE id
  ``spiffe://{trust domain}/ns/{namespace}/{app id}``, and an empty subject (so the SAN is
  critical, as the X.509-SVID spec asks). The CSR's own subject and SANs are ignored: the
  identity comes from the control plane's admission, never from the request.
- ``not_before`` is backdated by the allowed clock skew; rotation happens at half-life.
- In self-hosted mode the root lives in ``$TANDEM_HOME/ca/`` (``root.pem``, ``root.key``,
  owner-only), one root for every trust domain on the machine, re-created when it is
  about to expire (every sidecar then gets the new bundle and a new certificate).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_TRUST_DOMAIN = "public"
DEFAULT_CERT_TTL = dt.timedelta(hours=24)
DEFAULT_CLOCK_SKEW = dt.timedelta(minutes=15)
ROOT_TTL = dt.timedelta(days=365)
# A root closer than this to its end is replaced at start-up rather than trusted further.
ROOT_RENEW_BEFORE = dt.timedelta(days=7)

CA_DIR = "ca"
ROOT_CERT_FILE = "root.pem"
ROOT_KEY_FILE = "root.key"


class CsrError(ValueError):
    """A certificate signing request this CA will not sign (the message says why)."""


def spiffe_id(trust_domain: str, namespace: str, app_id: str) -> str:
    """Dapr's SPIFFE id layout: no ``sa`` segment, the app id last."""
    return f"spiffe://{trust_domain}/ns/{namespace}/{app_id}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def public_key_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def csr_public_key(csr_pem: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a well-formed, self-signed CSR; CsrError otherwise."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise CsrError("the CSR is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CsrError("the CSR's signature does not verify")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CsrError("the CSR's key must be ECDSA P-256 (Envoy validates no other EC curve)")
    return key


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    spiffe_id: str
    certificate_pem: str
    serial: int
    issued_at: dt.datetime
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def rotate_at(self) -> dt.datetime:
        """Half-life, counted from issue time (not from the backdated not_before)."""
        return self.issued_at + (self.not_after - self.issued_at) / 2


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate

    @classmethod
    def generate(
        cls, now: dt.datetime | None = None, ttl: dt.timedelta = ROOT_TTL
    ) -> CertificateAuthority:
        now = now or utcnow()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tandem"),
                x509.NameAttribute(NameOID.COMMON_NAME, "tandem mesh root"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DEFAULT_CLOCK_SKEW)
            .not_valid_after(now + ttl)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def trust_bundle_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def expires_within(self, window: dt.timedelta, now: dt.datetime | None = None) -> bool:
        return self.certificate.not_valid_after_utc - (now or utcnow()) < window

    def sign(
        self,
        public_key: ec.EllipticCurvePublicKey,
        spiffe: str,
        *,
        ttl: dt.timedelta = DEFAULT_CERT_TTL,
        skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
        now: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """A workload certificate for ``spiffe`` over ``public_key`` (already vetted)."""
        now = now or utcnow()
        not_before = now - skew
        # Never outlive the root: a chain with an expired root fails anyway.
        not_after = min(now + ttl, self.certificate.not_valid_after_utc)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(
            spiffe_id=spiffe,
            certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            serial=serial,
            issued_at=now,
            not_before=not_before,
            not_after=not_after,
        )


# --- the I/O edge ----------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def ca_dir(home: Path) -> Path:
    return home / CA_DIR


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def load_or_create_ca(directory: Path, now: dt.datetime | None = None) -> CertificateAuthority:
    """The root persisted in ``directory``; a new one if absent, unreadable or expiring."""
    ensure_private_dir(directory)
    cert_path, key_path = directory / ROOT_CERT_FILE, directory / ROOT_KEY_FILE
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if isinstance(key, ec.EllipticCurvePrivateKey) and public_key_der(
            key.public_key()
        ) == public_key_der(cert.public_key()):  # type: ignore[arg-type]
            ca = CertificateAuthority(key, cert)
            if not ca.expires_within(ROOT_RENEW_BEFORE, now):
                return ca
    except (OSError, ValueError):
        pass
    ca = CertificateAuthority.generate(now)
    _write_private(
        key_path,
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_private(cert_path, ca.trust_bundle_pem.encode())
    return ca


def write_private_file(path: Path, data: bytes) -> None:
    _write_private(path, data)
