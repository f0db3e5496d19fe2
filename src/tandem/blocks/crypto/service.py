"""The cryptography block: named key providers, Dapr's encryption scheme v1 over streams,
and the subtle (single-operation) API, with Dapr's error codes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component

if TYPE_CHECKING:
    from tandem.blocks.crypto import scheme
    from tandem.blocks.crypto.keys import Key

# The operations load `cryptography` (and jwcrypto): imported by the calls that use them,
# so a sidecar with no crypto component never loads them.


class KeyProvider(Protocol):
    async def get_key(self, name: str) -> Key: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EncryptOptions:
    key_name: str
    key_wrap_algorithm: str
    data_encryption_cipher: str = ""
    omit_decryption_key_name: bool = False
    decryption_key_name: str = ""


def crypto_error(message: str) -> DaprError:
    return DaprError("ERR_CRYPTO", f"failed to perform operation: {message}")


def bad_request(message: str) -> DaprError:
    return DaprError("ERR_BAD_REQUEST", message)


class CryptoService:
    def __init__(self, providers: Mapping[str, tuple[str, KeyProvider]]) -> None:
        self._providers = dict(providers)

    @classmethod
    def from_specs(cls, specs: Iterable[ComponentSpec], ctx: ComponentContext) -> CryptoService:
        return cls({s.name: cls.build(s, ctx) for s in specs if s.type.startswith("crypto.")})

    @staticmethod
    def build(spec: ComponentSpec, ctx: ComponentContext) -> tuple[str, KeyProvider]:
        return spec.type, cast(KeyProvider, create_component(spec, ctx))

    async def swap(self, name: str, new: tuple[str, KeyProvider] | None) -> KeyProvider | None:
        """Serve ``new`` under ``name`` (None: remove it); the replaced provider, to close."""
        old = self._providers.pop(name, None)
        if new is not None:
            self._providers[name] = new
        return None if old is None else old[1]

    @property
    def components(self) -> Mapping[str, str]:
        return {name: kind for name, (kind, _) in self._providers.items()}

    def provider(self, name: str) -> KeyProvider:
        if not self._providers:
            raise DaprError(
                "ERR_CRYPTO_PROVIDERS_NOT_CONFIGURED", "crypto providers not configured"
            )
        if not name:
            raise bad_request("missing component name")
        found = self._providers.get(name)
        if found is None:
            raise DaprError("ERR_CRYPTO_PROVIDER_NOT_FOUND", f"crypto provider {name} not found")
        return found[1]

    # -- scheme v1 streams ------------------------------------------------------------------

    async def encrypt(
        self, component: str, options: EncryptOptions, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """The encrypted stream: the header, then each sealed segment as it fills."""
        from tandem.blocks.crypto import ops, scheme
        from tandem.blocks.crypto.keys import CryptoKeyError

        provider = self.provider(component)
        if not options.key_name:
            raise bad_request("missing key name")
        if not options.key_wrap_algorithm:
            raise bad_request("missing key wrap algorithm")
        try:
            cipher = scheme.Cipher.from_name(options.data_encryption_cipher)
            wrap_id, wrap_name = scheme.wrap_algorithm(options.key_wrap_algorithm)
        except scheme.SchemeError as exc:
            raise bad_request(str(exc)) from None
        if wrap_name.endswith("CBC-NOPAD"):
            # Wrapping with CBC needs an IV, and the v1 manifest has no field to carry one.
            raise crypto_error(f"key wrap algorithm {wrap_name} cannot be used with scheme v1")
        try:
            key = await provider.get_key(options.key_name)
            file_key = scheme.new_file_key()
            wrapped, _ = ops.encrypt(key, wrap_name, file_key)
        except (CryptoKeyError, ops.CryptoOpError) as exc:
            raise crypto_error(f"failed to wrap the file key: {exc}") from None
        key_name = (
            ""
            if options.omit_decryption_key_name
            else (options.decryption_key_name or options.key_name)
        )
        manifest = scheme.Manifest(
            wrap_id, wrapped, cipher, os.urandom(scheme.NONCE_PREFIX_SIZE), key_name
        )
        encryptor = scheme.Encryptor(file_key, manifest)
        return self._encrypting(encryptor, chunks)

    @staticmethod
    async def _encrypting(
        encryptor: scheme.Encryptor, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        yield encryptor.header
        async for chunk in chunks:
            out = encryptor.update(chunk)
            if out:
                yield out
        last = encryptor.finish()
        if last:
            yield last

    async def decrypt(
        self, component: str, key_name: str, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """The plaintext, segment by segment, each verified before it is given out."""
        from tandem.blocks.crypto import ops, scheme
        from tandem.blocks.crypto.keys import CryptoKeyError

        provider = self.provider(component)
        buffer = b""
        header = None
        async for chunk in chunks:
            buffer += chunk
            try:
                header = scheme.read_header(buffer)
            except scheme.SchemeError as exc:
                raise crypto_error(str(exc)) from None
            if header is not None:
                break
        if header is None:
            raise crypto_error("the stream ends before the end of the header")
        manifest, signed, mac, length = header
        name = key_name or manifest.key_name
        if not name:
            raise crypto_error("the message does not name its key: pass a key name")
        try:
            key = await provider.get_key(name)
        except CryptoKeyError as exc:
            raise crypto_error(str(exc)) from None
        try:
            file_key = ops.decrypt(key, manifest.key_wrap_name, manifest.wrapped_key)
        except ops.CryptoOpError:
            # As Dapr: a key that does not unwrap is found out by the header's MAC below.
            file_key = b""
        try:
            decryptor = scheme.Decryptor(file_key, manifest, signed, mac)
        except scheme.SchemeError as exc:
            raise crypto_error(str(exc)) from None
        return self._decrypting(decryptor, buffer[length:], chunks)

    @staticmethod
    async def _decrypting(
        decryptor: scheme.Decryptor, rest: bytes, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        from tandem.blocks.crypto import scheme

        try:
            out = decryptor.update(rest)
            if out:
                yield out
            async for chunk in chunks:
                out = decryptor.update(chunk)
                if out:
                    yield out
            last = decryptor.finish()
            if last:
                yield last
        except scheme.SchemeError as exc:
            raise crypto_error(str(exc)) from None

    # -- subtle ------------------------------------------------------------------------------

    async def key(self, component: str, name: str) -> Key:
        from tandem.blocks.crypto.keys import CryptoKeyError

        provider = self.provider(component)
        try:
            return await provider.get_key(name)
        except CryptoKeyError as exc:
            raise DaprError("ERR_CRYPTO_KEY", f"failed to retrieve key {name}: {exc}") from None

    async def subtle_encrypt(
        self, component: str, key_name: str, algorithm: str, data: bytes, nonce: bytes, aad: bytes
    ) -> tuple[bytes, bytes]:
        from tandem.blocks.crypto import ops

        key = await self.key(component, key_name)
        try:
            return ops.encrypt(key, algorithm, data, nonce, aad)
        except ops.CryptoOpError as exc:
            raise crypto_error(str(exc)) from None

    async def subtle_decrypt(
        self,
        component: str,
        key_name: str,
        algorithm: str,
        data: bytes,
        nonce: bytes,
        tag: bytes,
        aad: bytes,
    ) -> bytes:
        from tandem.blocks.crypto import ops

        key = await self.key(component, key_name)
        try:
            return ops.decrypt(key, algorithm, data, nonce, tag, aad)
        except ops.CryptoOpError as exc:
            raise crypto_error(str(exc)) from None

    async def subtle_sign(
        self, component: str, key_name: str, algorithm: str, digest: bytes
    ) -> bytes:
        from tandem.blocks.crypto import ops

        key = await self.key(component, key_name)
        try:
            return ops.sign(key, algorithm, digest)
        except ops.CryptoOpError as exc:
            raise crypto_error(str(exc)) from None

    async def subtle_verify(
        self, component: str, key_name: str, algorithm: str, digest: bytes, signature: bytes
    ) -> bool:
        from tandem.blocks.crypto import ops

        key = await self.key(component, key_name)
        # A verifier needs only the public part.
        public = dataclasses.replace(key, private=None)
        try:
            return ops.verify(public, algorithm, digest, signature)
        except ops.CryptoOpError as exc:
            raise crypto_error(str(exc)) from None

    async def close(self) -> None:
        for _, provider in self._providers.values():
            await provider.close()
