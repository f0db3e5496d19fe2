"""The CA: what a workload certificate says, and what the CA refuses to sign."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tandem.xds.ca import (
    CertificateAuthority,
    CsrError,
    csr_public_key,
    load_or_create_ca,
    public_key_der,
    spiffe_id,
)
from tandem.xds.enrolment import EnrolmentKey, WorkloadKey

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, san: str | None = None) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "i-am-admin")])
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_spiffe_ids_follow_daprs_layout() -> None:
    assert spiffe_id("public", "default", "orders") == "spiffe://public/ns/default/orders"


def test_a_workload_certificate_is_an_x509_svid_for_the_id_the_ca_chose() -> None:
    ca = CertificateAuthority.generate(NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    # The CSR asks for another identity: ignored.
    csr = _csr(key, san="spiffe://public/ns/default/admin")

    issued = ca.sign(
        csr_public_key(csr),
        "spiffe://public/ns/default/orders",
        ttl=dt.timedelta(hours=24),
        skew=dt.timedelta(minutes=15),
        now=NOW,
    )

    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # the subject is empty
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/default/orders"
    ]
    assert leaf.subject == x509.Name([])
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert public_key_der(leaf.public_key()) == public_key_der(key.public_key())  # type: ignore[arg-type]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert leaf.not_valid_before_utc == NOW - dt.timedelta(minutes=15)
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(hours=24)
    assert issued.rotate_at == NOW + dt.timedelta(hours=12)
    leaf.verify_directly_issued_by(ca.certificate)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "ECDSA P-256"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "ECDSA P-256"),
    ],
)
def test_only_p256_csrs_are_signed(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, reason: str
) -> None:
    with pytest.raises(CsrError, match=reason):
        csr_public_key(_csr(key))


def test_garbage_is_not_a_csr() -> None:
    with pytest.raises(CsrError, match="not a PEM certificate signing request"):
        csr_public_key(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )


def test_the_root_and_enrolment_key_persist_owner_only_and_are_reused(tmp_path: Path) -> None:
    first = load_or_create_ca(tmp_path / "ca")
    again = load_or_create_ca(tmp_path / "ca")
    key = EnrolmentKey.load_or_create(tmp_path / "ca")

    assert again.trust_bundle_pem == first.trust_bundle_pem
    assert EnrolmentKey.load(tmp_path / "ca") == key
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    for name in ("root.key", "root.pem", "enrolment.key"):
        assert stat.S_IMODE((tmp_path / "ca" / name).stat().st_mode) == 0o600


def test_a_root_about_to_expire_is_replaced(tmp_path: Path) -> None:
    old = load_or_create_ca(tmp_path, now=NOW - dt.timedelta(days=362))

    fresh = load_or_create_ca(tmp_path, now=NOW)

    assert fresh.trust_bundle_pem != old.trust_bundle_pem


def test_a_missing_enrolment_key_is_reported_readably(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="the control plane creates it at start-up"):
        EnrolmentKey.load(tmp_path)


def test_keys_never_show_in_reprs() -> None:
    key = WorkloadKey.generate()
    ca = CertificateAuthority.generate()

    assert "PRIVATE" not in repr(key)
    assert "secret" not in repr(EnrolmentKey.generate())
    assert "key=" not in repr(ca)
