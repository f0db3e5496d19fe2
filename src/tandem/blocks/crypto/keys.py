"""Keys as Dapr's crypto components hold them: read from JWK (JSON), PEM (PKCS#1, PKCS#8,
PKIX) or raw bytes (a symmetric key, optionally base64), told apart the way Dapr does: by
the file's extension first, then by its content."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class CryptoKeyError(ValueError):
    """The key cannot be read or does not suit the operation (``ERR_CRYPTO_KEY``/``ERR_CRYPTO``)."""


@dataclass(frozen=True, slots=True)
class Key:
    """One key: symmetric bytes, or an asymmetric private or public key."""

    name: str
    secret: bytes | None = None
    private: PrivateKey | None = None
    public: PublicKey | None = None

    @property
    def kind(self) -> str:
        if self.secret is not None:
            return "oct"
        pub = self.public
        if isinstance(pub, rsa.RSAPublicKey):
            return "RSA"
        if isinstance(pub, ec.EllipticCurvePublicKey):
            return "EC"
        return "OKP"


def _asymmetric(name: str, obj: Any) -> Key:
    if isinstance(obj, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        return Key(name, private=obj, public=obj.public_key())
    if isinstance(obj, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return Key(name, public=obj)
    raise CryptoKeyError(f"key {name}: unsupported key type {type(obj).__name__}")


def from_pem(name: str, data: bytes) -> Key:
    try:
        return _asymmetric(name, serialization.load_pem_private_key(data, password=None))
    except ValueError:
        pass
    except TypeError as exc:  # an encrypted private key
        raise CryptoKeyError(f"key {name}: {exc}") from None
    try:
        return _asymmetric(name, serialization.load_pem_public_key(data))
    except ValueError as exc:
        raise CryptoKeyError(f"key {name}: not a PEM key Dapr reads: {exc}") from None


def from_jwk(name: str, data: bytes) -> Key:
    try:
        key = jwk.JWK.from_json(data.decode())
    except (ValueError, UnicodeDecodeError, jwk.InvalidJWKValue) as exc:
        raise CryptoKeyError(f"key {name}: not a JWK: {exc}") from None
    kty = key.get("kty")
    if kty == "oct":
        return Key(name, secret=_b64url(str(key.get("k", ""))))
    if kty not in ("RSA", "EC", "OKP"):
        raise CryptoKeyError(f"key {name}: unsupported key type {kty!r}")
    pem = key.export_to_pem(private_key=key.has_private, password=None)
    return from_pem(name, pem)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def from_raw(name: str, data: bytes) -> Key:
    """A symmetric key: base64 (standard or URL-safe) when it decodes, else the bytes."""
    trimmed = data.rstrip(b"\n=")
    for alphabet in (None, b"-_"):
        try:
            padded = trimmed + b"=" * (-len(trimmed) % 4)
            return Key(name, secret=base64.b64decode(padded, altchars=alphabet, validate=True))
        except (binascii.Error, ValueError):
            continue
    return Key(name, secret=data)


def parse_key(name: str, data: bytes, extension: str = "") -> Key:
    if not data:
        raise CryptoKeyError(f"key {name}: the key file is empty")
    ext = extension.lower()
    if ext == ".json":
        return from_jwk(name, data)
    if ext == ".pem":
        return from_pem(name, data)
    if data[:1] == b"{" and len(data) not in (16, 24, 32):
        return from_jwk(name, data)
    if len(data) > 10 and data.startswith(b"-----"):
        return from_pem(name, data)
    return from_raw(name, data)


def public_pem(key: Key) -> str:
    if key.public is None:
        raise CryptoKeyError(f"key {key.name} is symmetric: it has no public part")
    return key.public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def public_jwk(key: Key) -> str:
    if key.public is None:
        raise CryptoKeyError(f"key {key.name} is symmetric: it has no public part")
    return str(jwk.JWK.from_pyca(key.public).export_public())
