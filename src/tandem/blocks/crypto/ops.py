"""The primitive operations of the subtle crypto API and of key wrapping, by JWA name, on
``cryptography``'s primitives: no cipher, MAC or padding is written here."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, keywrap, padding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, utils
from cryptography.hazmat.primitives.asymmetric import padding as apadding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from tandem.blocks.crypto.keys import Key

TAG_SIZE = 16


class CryptoOpError(ValueError):
    """The operation failed: bad input, wrong key, forged data (``ERR_CRYPTO``)."""


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_OAEP: dict[str, type[hashes.HashAlgorithm]] = {
    "RSA-OAEP": hashes.SHA1,
    "RSA-OAEP-256": hashes.SHA256,
    "RSA-OAEP-384": hashes.SHA384,
    "RSA-OAEP-512": hashes.SHA512,
}
_AES_BITS = {"128": 16, "192": 24, "256": 32}


def _secret(key: Key, algorithm: str, size: int | None = None) -> bytes:
    if key.secret is None:
        raise CryptoOpError(
            f"algorithm {algorithm} needs a symmetric key; {key.name} is {key.kind}"
        )
    if size is not None and len(key.secret) != size:
        raise CryptoOpError(
            f"algorithm {algorithm} needs a {size * 8}-bit key; {key.name} has {len(key.secret) * 8}"
        )
    return key.secret


def _rsa_public(key: Key, algorithm: str) -> rsa.RSAPublicKey:
    if not isinstance(key.public, rsa.RSAPublicKey):
        raise CryptoOpError(f"algorithm {algorithm} needs an RSA key; {key.name} is {key.kind}")
    return key.public


def _rsa_private(key: Key, algorithm: str) -> rsa.RSAPrivateKey:
    if not isinstance(key.private, rsa.RSAPrivateKey):
        raise CryptoOpError(f"algorithm {algorithm} needs an RSA private key ({key.name})")
    return key.private


def _oaep(algorithm: str) -> apadding.AsymmetricPadding:
    if algorithm == "RSA1_5":
        return apadding.PKCS1v15()
    h = _OAEP[algorithm]()
    return apadding.OAEP(mgf=apadding.MGF1(h), algorithm=h, label=None)


def _aead(algorithm: str, key: Key) -> AESGCM | ChaCha20Poly1305:
    if algorithm == "C20P":
        return ChaCha20Poly1305(_secret(key, algorithm, 32))
    return AESGCM(_secret(key, algorithm, _AES_BITS[algorithm[1:4]]))


def _is_gcm(a: str) -> bool:
    return a in ("A128GCM", "A192GCM", "A256GCM", "C20P")


def _is_cbc(a: str) -> bool:
    return a in ("A128CBC", "A192CBC", "A256CBC") or a.endswith("CBC-NOPAD") and a[1:4] in _AES_BITS


def _is_kw(a: str) -> bool:
    return a in ("A128KW", "A192KW", "A256KW")


def _need_nonce(nonce: bytes, size: int, algorithm: str) -> None:
    if len(nonce) != size:
        raise CryptoOpError(f"algorithm {algorithm} needs a {size}-byte nonce, got {len(nonce)}")


def encrypt(
    key: Key, algorithm: str, plaintext: bytes, nonce: bytes = b"", aad: bytes = b""
) -> tuple[bytes, bytes]:
    """(ciphertext, tag); the tag is empty for ciphers without one."""
    if _is_gcm(algorithm):
        _need_nonce(nonce, 12, algorithm)
        sealed = _aead(algorithm, key).encrypt(nonce, plaintext, aad or None)
        return sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    if _is_cbc(algorithm):
        _need_nonce(nonce, 16, algorithm)
        secret = _secret(key, algorithm, _AES_BITS[algorithm[1:4]])
        data = plaintext
        if not algorithm.endswith("NOPAD"):
            padder = padding.PKCS7(128).padder()
            data = padder.update(plaintext) + padder.finalize()
        elif len(data) % 16:
            raise CryptoOpError(f"{algorithm}: the plaintext is not a multiple of 16 bytes")
        enc = Cipher(algorithms.AES(secret), modes.CBC(nonce)).encryptor()
        return enc.update(data) + enc.finalize(), b""
    if _is_kw(algorithm):
        secret = _secret(key, algorithm, _AES_BITS[algorithm[1:4]])
        try:
            return keywrap.aes_key_wrap(secret, plaintext), b""
        except ValueError as exc:
            raise CryptoOpError(f"{algorithm}: {exc}") from None
    if algorithm in _OAEP or algorithm == "RSA1_5":
        try:
            return _rsa_public(key, algorithm).encrypt(plaintext, _oaep(algorithm)), b""
        except ValueError as exc:
            raise CryptoOpError(f"{algorithm}: {exc}") from None
    raise CryptoOpError(f"unsupported algorithm {algorithm!r}")


def decrypt(
    key: Key,
    algorithm: str,
    ciphertext: bytes,
    nonce: bytes = b"",
    tag: bytes = b"",
    aad: bytes = b"",
) -> bytes:
    try:
        if _is_gcm(algorithm):
            _need_nonce(nonce, 12, algorithm)
            return _aead(algorithm, key).decrypt(nonce, ciphertext + tag, aad or None)
        if _is_cbc(algorithm):
            _need_nonce(nonce, 16, algorithm)
            secret = _secret(key, algorithm, _AES_BITS[algorithm[1:4]])
            dec = Cipher(algorithms.AES(secret), modes.CBC(nonce)).decryptor()
            data = dec.update(ciphertext) + dec.finalize()
            if algorithm.endswith("NOPAD"):
                return data
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(data) + unpadder.finalize()
        if _is_kw(algorithm):
            secret = _secret(key, algorithm, _AES_BITS[algorithm[1:4]])
            return keywrap.aes_key_unwrap(secret, ciphertext)
        if algorithm in _OAEP or algorithm == "RSA1_5":
            return _rsa_private(key, algorithm).decrypt(ciphertext, _oaep(algorithm))
    except (InvalidTag, keywrap.InvalidUnwrap):
        raise CryptoOpError(
            f"{algorithm}: the data or key is not the one it was sealed with"
        ) from None
    except ValueError as exc:
        if isinstance(exc, CryptoOpError):
            raise
        raise CryptoOpError(f"{algorithm}: {exc}") from None
    raise CryptoOpError(f"unsupported algorithm {algorithm!r}")


def _ec_size(curve: ec.EllipticCurve) -> int:
    return (curve.key_size + 7) // 8


def sign(key: Key, algorithm: str, digest: bytes) -> bytes:
    """A JWS-style signature of ``digest`` (the message itself for EdDSA)."""
    if algorithm == "EdDSA":
        if not isinstance(key.private, ed25519.Ed25519PrivateKey):
            raise CryptoOpError(f"EdDSA needs an Ed25519 private key ({key.name})")
        return key.private.sign(digest)
    kind, bits = algorithm[:2], algorithm[2:]
    if bits not in _HASHES or kind not in ("RS", "PS", "ES"):
        raise CryptoOpError(f"unsupported algorithm {algorithm!r}")
    h = _HASHES[bits]()
    if len(digest) != h.digest_size:
        raise CryptoOpError(f"{algorithm} signs a {h.digest_size}-byte digest, got {len(digest)}")
    prehashed = utils.Prehashed(h)
    if kind == "ES":
        if not isinstance(key.private, ec.EllipticCurvePrivateKey):
            raise CryptoOpError(f"{algorithm} needs an EC private key ({key.name})")
        der = key.private.sign(digest, ec.ECDSA(prehashed))
        r, s = utils.decode_dss_signature(der)
        size = _ec_size(key.private.curve)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    pad = _rsa_sig_padding(kind, h)
    return _rsa_private(key, algorithm).sign(digest, pad, prehashed)


def _rsa_sig_padding(kind: str, h: hashes.HashAlgorithm) -> apadding.AsymmetricPadding:
    if kind == "RS":
        return apadding.PKCS1v15()
    return apadding.PSS(mgf=apadding.MGF1(h), salt_length=h.digest_size)


def verify(key: Key, algorithm: str, digest: bytes, signature: bytes) -> bool:
    try:
        if algorithm == "EdDSA":
            if not isinstance(key.public, ed25519.Ed25519PublicKey):
                raise CryptoOpError(f"EdDSA needs an Ed25519 key ({key.name})")
            key.public.verify(signature, digest)
            return True
        kind, bits = algorithm[:2], algorithm[2:]
        if bits not in _HASHES or kind not in ("RS", "PS", "ES"):
            raise CryptoOpError(f"unsupported algorithm {algorithm!r}")
        h = _HASHES[bits]()
        prehashed = utils.Prehashed(h)
        if kind == "ES":
            if not isinstance(key.public, ec.EllipticCurvePublicKey):
                raise CryptoOpError(f"{algorithm} needs an EC key ({key.name})")
            size = _ec_size(key.public.curve)
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            der = utils.encode_dss_signature(r, s)
            key.public.verify(der, digest, ec.ECDSA(prehashed))
            return True
        _rsa_public(key, algorithm).verify(signature, digest, _rsa_sig_padding(kind, h), prehashed)
        return True
    except InvalidSignature:
        return False
    except ValueError as exc:
        if isinstance(exc, CryptoOpError):
            raise
        raise CryptoOpError(f"{algorithm}: {exc}") from None
