"""The cryptography block without a sidecar: Dapr's published scheme v1 test vectors, our
output read back by an independent reading of the format, round trips through
``crypto.dapr.localstorage`` with RSA and symmetric keys (PEM, JWK, raw), tampering and wrong
keys refused, and the subtle operations."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from dapr.proto.runtime.v1 import crypto_pb2
from jwcrypto import jwk

from tandem.blocks.crypto import scheme
from tandem.blocks.crypto.service import CryptoService, EncryptOptions
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.ext_proc import crypto_grpc

TESTDATA = Path(__file__).parent / "testdata"
VECTORS = {
    "single-segment": b"hello world",
    "single-segment-no-key-name": b"hello world",
    "multi-segment": bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, 0]) * (12 << 10),
    "one-full-segment": bytes(range(1, 9)) * (8 << 10),
    "two-full-segments": bytes(range(1, 9)) * (16 << 10),
    "empty-message": b"",
}


def open_vector(data: bytes, step: int) -> bytes:
    header = scheme.read_header(data)
    assert header is not None
    manifest, signed, mac, length = header
    # The vectors keep the file key unwrapped in "wfk".
    dec = scheme.Decryptor(manifest.wrapped_key, manifest, signed, mac)
    out = b"".join(dec.update(data[i : i + step]) for i in range(length, len(data), step))
    return out + dec.finish()


@pytest.mark.parametrize("name", sorted(VECTORS))
@pytest.mark.parametrize("step", [1000, 65552, 1 << 20])
def test_dapr_test_vectors_decrypt(name: str, step: int) -> None:
    assert open_vector((TESTDATA / f"{name}.enc").read_bytes(), step) == VECTORS[name]


def test_tampering_is_refused() -> None:
    data = bytearray((TESTDATA / "two-full-segments.enc").read_bytes())
    header = scheme.read_header(bytes(data))
    assert header is not None
    length = header[3]
    flipped = bytearray(data)
    flipped[length + 10] ^= 1
    with pytest.raises(scheme.SchemeError, match="segment 0"):
        open_vector(bytes(flipped), 1 << 20)
    # Dropping the last segment: the one before it was not sealed as last.
    with pytest.raises(scheme.SchemeError):
        open_vector(bytes(data[: length + 65552]), 1 << 20)
    # A manifest edited to name another key no longer matches the header's MAC.
    edited = bytes(data).replace(b'"k":"mykey"', b'"k":"yourkey"', 1)
    with pytest.raises(scheme.SchemeError, match="MAC"):
        open_vector(edited, 1 << 20)


# -- an independent reading of the format, from its specification ---------------------------


def spec_decrypt(data: bytes, file_key: bytes) -> tuple[dict[str, object], bytes]:
    line1, line2, line3, payload = data.split(b"\n", 3)
    assert line1 == b"dapr.io/enc/v1"
    manifest = json.loads(line2)
    mac_key = HKDF(hashes.SHA256(), 32, None, b"header").derive(file_key)
    h = hmac.HMAC(mac_key, hashes.SHA256())
    h.update(line1 + b"\n" + line2 + b"\n")
    h.verify(base64.b64decode(line3))
    prefix = base64.b64decode(manifest["np"])
    pk = HKDF(hashes.SHA256(), 32, prefix, b"payload").derive(file_key)
    aead = AESGCM(pk) if manifest["cph"] == 1 else ChaCha20Poly1305(pk)
    size = 65536 + 16
    segments = [payload[i : i + size] for i in range(0, len(payload), size)]
    out = b""
    for i, seg in enumerate(segments):
        last = b"\x01" if i == len(segments) - 1 else b"\x00"
        out += aead.decrypt(prefix + i.to_bytes(4, "big") + last, seg, None)
    return manifest, out


# -- keys and the service -----------------------------------------------------------------


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (d / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (d / "rsa-pkcs1").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (d / "rsa-public.pem").write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (d / "other-rsa.json").write_text(jwk.JWK.generate(kty="RSA", size=2048).export_private())
    (d / "sym").write_bytes(os.urandom(32))
    (d / "sym-b64").write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    (d / "sym.json").write_text(jwk.JWK.generate(kty="oct", size=256).export())
    (d / "other-sym").write_bytes(os.urandom(32))
    (d / "ec.pem").write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (d / "ed.json").write_text(jwk.JWK.generate(kty="OKP", crv="Ed25519").export_private())
    return d


@pytest.fixture
async def service(keys_dir: Path, tmp_path: Path) -> AsyncIterator[CryptoService]:
    spec = ComponentSpec("keys", "crypto.dapr.localstorage", metadata={"path": str(keys_dir)})
    svc = CryptoService.from_specs([spec], ComponentContext("app", home=tmp_path))
    yield svc
    await svc.close()


async def chunks(data: bytes, step: int = 7000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


async def roundtrip(service: CryptoService, options: EncryptOptions, data: bytes) -> bytes:
    sealed = await collect(await service.encrypt("keys", options, chunks(data)))
    return await collect(await service.decrypt("keys", "", chunks(sealed, 5000)))


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        ("rsa.pem", "RSA"),
        ("rsa-pkcs1", "RSA-OAEP-256"),
        ("other-rsa.json", "RSA"),
        ("sym", "AES"),
        ("sym-b64", "A256KW"),
        ("sym.json", "AES"),
    ],
)
@pytest.mark.parametrize("cipher", ["aes-gcm", "chacha20-poly1305"])
async def test_round_trip_with_each_kind_of_key(
    service: CryptoService, key: str, algorithm: str, cipher: str
) -> None:
    data = os.urandom(3 * 65536 + 123)
    assert await roundtrip(service, EncryptOptions(key, algorithm, cipher), data) == data


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 2 * 65536])
async def test_round_trip_sizes(service: CryptoService, size: int) -> None:
    data = os.urandom(size)
    assert await roundtrip(service, EncryptOptions("sym", "AES"), data) == data


async def test_our_output_follows_the_published_format(
    service: CryptoService, keys_dir: Path
) -> None:
    data = os.urandom(2 * 65536 + 5)
    options = EncryptOptions("rsa.pem", "RSA", "chacha20-poly1305")
    sealed = await collect(await service.encrypt("keys", options, chunks(data)))
    manifest = json.loads(sealed.split(b"\n")[1])
    assert list(manifest) == ["k", "kw", "wfk", "cph", "np"]
    assert (manifest["k"], manifest["kw"], manifest["cph"]) == ("rsa.pem", 5, 2)
    assert len(base64.b64decode(manifest["np"])) == 7
    private = serialization.load_pem_private_key((keys_dir / "rsa.pem").read_bytes(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    from cryptography.hazmat.primitives.asymmetric import padding

    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    file_key = private.decrypt(base64.b64decode(manifest["wfk"]), oaep)
    _, plain = spec_decrypt(sealed, file_key)
    assert plain == data


async def test_encrypting_for_a_public_key_and_naming_the_decryption_key(
    service: CryptoService,
) -> None:
    options = EncryptOptions("rsa-public.pem", "RSA", decryption_key_name="rsa.pem")
    sealed = await collect(await service.encrypt("keys", options, chunks(b"for the owner")))
    assert b'"k":"rsa.pem"' in sealed
    assert await collect(await service.decrypt("keys", "", chunks(sealed))) == b"for the owner"


async def test_omitted_key_name_must_be_given_to_decrypt(service: CryptoService) -> None:
    options = EncryptOptions("sym", "AES", omit_decryption_key_name=True)
    sealed = await collect(await service.encrypt("keys", options, chunks(b"secret")))
    assert b'"k"' not in sealed.split(b"\n")[1]
    with pytest.raises(DaprError) as err:
        await service.decrypt("keys", "", chunks(sealed))
    assert err.value.error_code == "ERR_CRYPTO"
    assert await collect(await service.decrypt("keys", "sym", chunks(sealed))) == b"secret"


@pytest.mark.parametrize(("key", "wrong"), [("sym", "other-sym"), ("rsa.pem", "other-rsa.json")])
async def test_wrong_key_is_err_crypto(service: CryptoService, key: str, wrong: str) -> None:
    algorithm = "AES" if key == "sym" else "RSA"
    sealed = await collect(
        await service.encrypt("keys", EncryptOptions(key, algorithm), chunks(b"x"))
    )
    with pytest.raises(DaprError) as err:
        await service.decrypt("keys", wrong, chunks(sealed))
    assert (err.value.error_code, err.value.http_status) == ("ERR_CRYPTO", 500)


async def test_bad_options_and_names(service: CryptoService) -> None:
    cases = [
        ("nope", EncryptOptions("sym", "AES"), "ERR_CRYPTO_PROVIDER_NOT_FOUND", 400),
        ("keys", EncryptOptions("", "AES"), "ERR_BAD_REQUEST", 400),
        ("keys", EncryptOptions("sym", "ROT13"), "ERR_BAD_REQUEST", 400),
        ("keys", EncryptOptions("sym", "AES", "des"), "ERR_BAD_REQUEST", 400),
        ("keys", EncryptOptions("missing", "AES"), "ERR_CRYPTO", 500),
        ("keys", EncryptOptions("../etc/passwd", "AES"), "ERR_CRYPTO", 500),
        ("keys", EncryptOptions("rsa.pem", "AES"), "ERR_CRYPTO", 500),
        ("keys", EncryptOptions("sym", "A128CBC-NOPAD"), "ERR_CRYPTO", 500),
    ]
    for component, options, code, status in cases:
        with pytest.raises(DaprError) as err:
            await service.encrypt(component, options, chunks(b"x"))
        assert (err.value.error_code, err.value.http_status) == (code, status), options
    with pytest.raises(DaprError) as err:
        await service.decrypt("keys", "sym", chunks(b"not a dapr message at all"))
    assert err.value.error_code == "ERR_CRYPTO"
    empty = CryptoService({})
    with pytest.raises(DaprError) as err:
        empty.provider("keys")
    assert err.value.error_code == "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED"


# -- subtle --------------------------------------------------------------------------------


async def test_subtle_operations(service: CryptoService) -> None:
    rpc = crypto_grpc.rpcs(service)
    nonce = os.urandom(12)
    enc = await rpc["SubtleEncryptAlpha1"](  # type: ignore[operator]
        crypto_pb2.SubtleEncryptRequest(
            component_name="keys",
            key_name="sym",
            algorithm="A256GCM",
            plaintext=b"hi",
            nonce=nonce,
            associated_data=b"ad",
        )
    )
    assert len(enc.tag) == 16
    dec = await rpc["SubtleDecryptAlpha1"](  # type: ignore[operator]
        crypto_pb2.SubtleDecryptRequest(
            component_name="keys",
            key_name="sym",
            algorithm="A256GCM",
            ciphertext=enc.ciphertext,
            nonce=nonce,
            tag=enc.tag,
            associated_data=b"ad",
        )
    )
    assert dec.plaintext == b"hi"

    wrapped = await rpc["SubtleWrapKeyAlpha1"](  # type: ignore[operator]
        crypto_pb2.SubtleWrapKeyRequest(
            component_name="keys", key_name="sym", algorithm="A256KW", plaintext_key=b"k" * 32
        )
    )
    unwrapped = await rpc["SubtleUnwrapKeyAlpha1"](  # type: ignore[operator]
        crypto_pb2.SubtleUnwrapKeyRequest(
            component_name="keys",
            key_name="sym",
            algorithm="A256KW",
            wrapped_key=wrapped.wrapped_key,
        )
    )
    assert unwrapped.plaintext_key == b"k" * 32

    digest = hashlib.sha256(b"message").digest()
    for key, algorithm, signed in [
        ("ec.pem", "ES256", digest),
        ("rsa.pem", "RS256", digest),
        ("rsa.pem", "PS256", digest),
        ("ed.json", "EdDSA", b"message"),
    ]:
        sig = await rpc["SubtleSignAlpha1"](  # type: ignore[operator]
            crypto_pb2.SubtleSignRequest(
                component_name="keys", key_name=key, algorithm=algorithm, digest=signed
            )
        )
        for candidate, valid in [(signed, True), (bytes(32), False)]:
            ok = await rpc["SubtleVerifyAlpha1"](  # type: ignore[operator]
                crypto_pb2.SubtleVerifyRequest(
                    component_name="keys",
                    key_name=key,
                    algorithm=algorithm,
                    digest=candidate,
                    signature=sig.signature,
                )
            )
            assert ok.valid is valid, (algorithm, valid)

    pem = await rpc["SubtleGetKeyAlpha1"](  # type: ignore[operator]
        crypto_pb2.SubtleGetKeyRequest(component_name="keys", name="rsa.pem")
    )
    assert pem.public_key.startswith("-----BEGIN PUBLIC KEY-----")
    as_jwk = await rpc["SubtleGetKeyAlpha1"](  # type: ignore[operator]
        crypto_pb2.SubtleGetKeyRequest(
            component_name="keys", name="ed.json", format=crypto_pb2.SubtleGetKeyRequest.JSON
        )
    )
    assert json.loads(as_jwk.public_key)["crv"] == "Ed25519"
    assert "d" not in json.loads(as_jwk.public_key)
    with pytest.raises(DaprError) as err:
        await rpc["SubtleGetKeyAlpha1"](  # type: ignore[operator]
            crypto_pb2.SubtleGetKeyRequest(component_name="keys", name="absent")
        )
    assert err.value.error_code == "ERR_CRYPTO_KEY"
