"""Dapr's encryption scheme v1 (``dapr.io/enc/v1``): the stream format Dapr's crypto API
writes and reads, so data encrypted by either runtime decrypts with the other.

Format (github.com/dapr/kit, ``schemes/enc/v1/README.md``)::

    dapr.io/enc/v1\\n
    {"k":<key name>,"kw":<wrap id>,"wfk":<b64 wrapped file key>,"cph":<cipher id>,"np":<b64 7-byte nonce prefix>}\\n
    <b64 HMAC-SHA-256 of the two lines above, keyed by HKDF(file key, info "header")>\\n
    segment_0 || segment_1 || ...

Each segment is up to 64 KiB of plaintext sealed with the cipher under
HKDF(file key, salt = nonce prefix, info "payload"), nonce = prefix || u32be(i) || last-flag,
followed by its 16-byte tag. An empty message has no segment at all.

Both directions are incremental: :class:`Encryptor` and :class:`Decryptor` take the stream
in any chunking and give back whole segments; the decryptor only ever returns data whose tag
verified, and holds a segment back until it knows whether it is the last.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEME = b"dapr.io/enc/v1"
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
FILE_KEY_SIZE = 32
MAX_SEGMENTS = 1 << 32


class SchemeError(ValueError):
    """The stream is not a valid v1 message, or it was tampered with."""


class Cipher(enum.IntEnum):
    AES_GCM = 1
    CHACHA20_POLY1305 = 2

    @classmethod
    def from_name(cls, name: str) -> Cipher:
        found = _CIPHER_NAMES.get(name.strip().lower() or "aes-gcm")
        if found is None:
            raise SchemeError(f"unsupported cipher {name!r} (aes-gcm, chacha20-poly1305)")
        return found


_CIPHER_NAMES = {"aes-gcm": Cipher.AES_GCM, "chacha20-poly1305": Cipher.CHACHA20_POLY1305}

# The scheme's key-wrapping algorithms by id, and the names (and aliases) users pass.
WRAP_IDS = {
    1: "A256KW",
    2: "A128CBC-NOPAD",
    3: "A192CBC-NOPAD",
    4: "A256CBC-NOPAD",
    5: "RSA-OAEP-256",
}
_WRAP_NAMES = {name: i for i, name in WRAP_IDS.items()} | {"AES": 1, "RSA": 5}


def wrap_algorithm(name: str) -> tuple[int, str]:
    """The (id, JWA name) for a ``dapr-key-wrap-algorithm`` value, aliases resolved."""
    key = name.strip().upper()
    wrap_id = _WRAP_NAMES.get(key)
    if wrap_id is None:
        raise SchemeError(
            f"unsupported key wrap algorithm {name!r} (AES, RSA, A256KW, RSA-OAEP-256)"
        )
    return wrap_id, WRAP_IDS[wrap_id]


@dataclass(frozen=True, slots=True)
class Manifest:
    key_wrap: int
    wrapped_key: bytes
    cipher: Cipher
    nonce_prefix: bytes
    key_name: str = ""

    @property
    def key_wrap_name(self) -> str:
        return WRAP_IDS.get(self.key_wrap, "")

    def to_json(self) -> bytes:
        """Compact JSON, in the field order Dapr writes."""
        obj: dict[str, object] = {}
        if self.key_name:
            obj["k"] = self.key_name
        obj["kw"] = self.key_wrap
        obj["wfk"] = base64.b64encode(self.wrapped_key).decode()
        obj["cph"] = int(self.cipher)
        obj["np"] = base64.b64encode(self.nonce_prefix).decode()
        return json.dumps(obj, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise SchemeError("the manifest is not a JSON object")
            key_name = obj.get("k", "")
            wrap = obj["kw"]
            cipher = obj["cph"]
            if not isinstance(key_name, str) or type(wrap) is not int or type(cipher) is not int:
                raise SchemeError("the manifest has fields of the wrong type")
            if wrap not in WRAP_IDS:
                raise SchemeError(f"unsupported key wrap algorithm id {wrap}")
            nonce_prefix = base64.b64decode(obj["np"], validate=True)
            wrapped = base64.b64decode(obj["wfk"], validate=True)
        except SchemeError:
            raise
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise SchemeError(f"invalid manifest: {exc}") from None
        if cipher not in tuple(Cipher):
            raise SchemeError(f"unsupported cipher id {cipher}")
        if len(nonce_prefix) != NONCE_PREFIX_SIZE:
            raise SchemeError("invalid nonce prefix")
        return cls(wrap, wrapped, Cipher(cipher), nonce_prefix, key_name)


def _hkdf(file_key: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(file_key)


def _header_mac(file_key: bytes, signed: bytes) -> bytes:
    h = chmac.HMAC(_hkdf(file_key, None, b"header"), hashes.SHA256())
    h.update(signed)
    return h.finalize()


def _aead(cipher: Cipher, file_key: bytes, nonce_prefix: bytes) -> AESGCM | ChaCha20Poly1305:
    payload_key = _hkdf(file_key, nonce_prefix, b"payload")
    if cipher is Cipher.CHACHA20_POLY1305:
        return ChaCha20Poly1305(payload_key)
    return AESGCM(payload_key)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_SEGMENTS:
        raise SchemeError("the message has more segments than the scheme allows")
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


def _each_full(
    pending: bytearray, size: int, process: Callable[[memoryview | bytes, bool], bytes]
) -> bytes:
    """``process`` each full segment of ``pending`` that more data follows (never the last),
    then drop them from ``pending``: one move of the rest however many there were."""
    count = (len(pending) - 1) // size if pending else 0
    if count == 0:
        return b""
    with memoryview(pending) as view:
        # The cipher reads the segments in place (no copy of each).
        out = [process(view[i * size : (i + 1) * size], False) for i in range(count)]
    del pending[: count * size]
    return out[0] if count == 1 else b"".join(out)


def new_file_key() -> bytes:
    return os.urandom(FILE_KEY_SIZE)


class Encryptor:
    """Seals a stream under ``file_key``; ``header`` goes first, then what ``update`` and
    ``finish`` return."""

    def __init__(self, file_key: bytes, manifest: Manifest) -> None:
        signed = SCHEME + b"\n" + manifest.to_json() + b"\n"
        self.header = signed + base64.b64encode(_header_mac(file_key, signed)) + b"\n"
        self._aead = _aead(manifest.cipher, file_key, manifest.nonce_prefix)
        self._prefix = manifest.nonce_prefix
        self._pending = bytearray()
        self._index = 0

    def _seal(self, chunk: memoryview | bytes, last: bool) -> bytes:
        out = self._aead.encrypt(_nonce(self._prefix, self._index, last), chunk, None)
        self._index += 1
        return out

    def update(self, data: bytes) -> bytes:
        self._pending += data
        # A full segment is sealed only once more data follows: the last one carries a flag.
        return _each_full(self._pending, SEGMENT_SIZE, self._seal)

    def finish(self) -> bytes:
        if not self._pending and self._index == 0:
            return b""  # an empty message has no segments
        out = self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        return out


def read_header(buffer: bytes) -> tuple[Manifest, bytes, bytes, int] | None:
    """(manifest, signed part, MAC, header length) once ``buffer`` holds the whole header;
    None while more is needed."""
    first = buffer.find(b"\n")
    if first < 0:
        if len(buffer) > len(SCHEME) + 1 or not SCHEME.startswith(buffer):
            raise SchemeError("not a Dapr encryption scheme v1 message")
        return None
    if buffer[:first] != SCHEME:
        raise SchemeError("not a Dapr encryption scheme v1 message")
    second = buffer.find(b"\n", first + 1)
    third = buffer.find(b"\n", second + 1) if second >= 0 else -1
    if third < 0:
        if len(buffer) > SEGMENT_SIZE:
            raise SchemeError("the header is larger than the scheme allows")
        return None
    manifest = Manifest.from_json(buffer[first + 1 : second])
    try:
        mac = base64.b64decode(buffer[second + 1 : third], validate=True)
    except binascii.Error:
        raise SchemeError("the header's MAC is not base64") from None
    return manifest, buffer[: second + 1], mac, third + 1


class Decryptor:
    """Opens the segments of a message whose header was read and whose file key was
    unwrapped; refuses a header whose MAC does not match (a wrong or forged key)."""

    def __init__(self, file_key: bytes, manifest: Manifest, signed: bytes, mac: bytes) -> None:
        if len(file_key) != FILE_KEY_SIZE or not hmac.compare_digest(
            _header_mac(file_key, signed), mac
        ):
            raise SchemeError("the header's MAC does not match: wrong key or tampered data")
        self._aead = _aead(manifest.cipher, file_key, manifest.nonce_prefix)
        self._prefix = manifest.nonce_prefix
        self._pending = bytearray()
        self._index = 0

    def _open(self, sealed: memoryview | bytes, last: bool) -> bytes:
        try:
            out = self._aead.decrypt(_nonce(self._prefix, self._index, last), sealed, None)
        except InvalidTag:
            raise SchemeError(f"segment {self._index} failed to decrypt") from None
        self._index += 1
        return out

    def update(self, data: bytes) -> bytes:
        self._pending += data
        return _each_full(self._pending, SEGMENT_SIZE + TAG_SIZE, self._open)

    def finish(self) -> bytes:
        if not self._pending:
            if self._index == 0:
                return b""
            raise SchemeError("the message ends without its last segment")
        if len(self._pending) <= TAG_SIZE:
            raise SchemeError("the last segment is truncated")
        out = self._open(bytes(self._pending), last=True)
        self._pending.clear()
        return out
