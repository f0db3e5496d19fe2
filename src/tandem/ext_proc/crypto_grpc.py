"""The cryptography RPCs: ``EncryptAlpha1``/``DecryptAlpha1`` (bidirectional streams of
numbered chunks, the first carrying the options) and the ``Subtle*Alpha1`` calls."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from dapr.proto.common.v1 import common_pb2
from dapr.proto.runtime.v1 import crypto_pb2

from tandem.blocks.crypto.service import CryptoService, EncryptOptions, bad_request, crypto_error
from tandem.ext_proc.grpc_api import Rpc, StreamRpc


async def _payloads(first: Any, requests: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """The data of each request, checking that chunks arrive numbered 0, 1, 2, ..."""
    expected = 0
    request = first
    while True:
        if request.payload.seq != expected:
            raise bad_request(
                f"invalid sequence number: got {request.payload.seq}, expected {expected}"
            )
        expected += 1
        if request.payload.data:
            yield request.payload.data
        try:
            request = await anext(requests)
        except StopAsyncIteration:
            return


async def _first(requests: AsyncIterator[Any]) -> Any:
    try:
        return await anext(requests)
    except StopAsyncIteration:
        raise bad_request("the stream ended before its first message") from None


def _numbered(
    chunks: AsyncIterator[bytes],
    make: type[crypto_pb2.EncryptResponse] | type[crypto_pb2.DecryptResponse],
) -> AsyncGenerator[Any, None]:
    async def gen() -> AsyncGenerator[Any, None]:
        seq = 0
        async for data in chunks:
            yield make(payload=common_pb2.StreamPayload(data=data, seq=seq))
            seq += 1

    return gen()


def rpcs(service: CryptoService) -> dict[str, Rpc]:
    async def encrypt(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        first = await _first(requests)
        if not first.HasField("options"):
            raise bad_request("the first message must carry the options")
        o = first.options
        options = EncryptOptions(
            key_name=o.key_name,
            key_wrap_algorithm=o.key_wrap_algorithm,
            data_encryption_cipher=o.data_encryption_cipher,
            omit_decryption_key_name=o.omit_decryption_key_name,
            decryption_key_name=o.decryption_key_name,
        )
        out = await service.encrypt(o.component_name, options, _payloads(first, requests))
        async for response in _numbered(out, crypto_pb2.EncryptResponse):
            yield response

    async def decrypt(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        first = await _first(requests)
        if not first.HasField("options"):
            raise bad_request("the first message must carry the options")
        o = first.options
        out = await service.decrypt(o.component_name, o.key_name, _payloads(first, requests))
        async for response in _numbered(out, crypto_pb2.DecryptResponse):
            yield response

    async def get_key(req: crypto_pb2.SubtleGetKeyRequest) -> crypto_pb2.SubtleGetKeyResponse:
        from tandem.blocks.crypto import keys  # loads `cryptography`: only when used

        key = await service.key(req.component_name, req.name)
        try:
            text = (
                keys.public_jwk(key)
                if req.format == crypto_pb2.SubtleGetKeyRequest.JSON
                else keys.public_pem(key)
            )
        except keys.CryptoKeyError as exc:
            raise crypto_error(str(exc)) from None
        return crypto_pb2.SubtleGetKeyResponse(name=req.name, public_key=text)

    async def subtle_encrypt(req: Any) -> crypto_pb2.SubtleEncryptResponse:
        ct, tag = await service.subtle_encrypt(
            req.component_name,
            req.key_name,
            req.algorithm,
            req.plaintext,
            req.nonce,
            req.associated_data,
        )
        return crypto_pb2.SubtleEncryptResponse(ciphertext=ct, tag=tag)

    async def subtle_decrypt(req: Any) -> crypto_pb2.SubtleDecryptResponse:
        pt = await service.subtle_decrypt(
            req.component_name,
            req.key_name,
            req.algorithm,
            req.ciphertext,
            req.nonce,
            req.tag,
            req.associated_data,
        )
        return crypto_pb2.SubtleDecryptResponse(plaintext=pt)

    async def wrap_key(req: Any) -> crypto_pb2.SubtleWrapKeyResponse:
        wrapped, tag = await service.subtle_encrypt(
            req.component_name,
            req.key_name,
            req.algorithm,
            req.plaintext_key,
            req.nonce,
            req.associated_data,
        )
        return crypto_pb2.SubtleWrapKeyResponse(wrapped_key=wrapped, tag=tag)

    async def unwrap_key(req: Any) -> crypto_pb2.SubtleUnwrapKeyResponse:
        pt = await service.subtle_decrypt(
            req.component_name,
            req.key_name,
            req.algorithm,
            req.wrapped_key,
            req.nonce,
            req.tag,
            req.associated_data,
        )
        return crypto_pb2.SubtleUnwrapKeyResponse(plaintext_key=pt)

    async def sign(req: Any) -> crypto_pb2.SubtleSignResponse:
        sig = await service.subtle_sign(req.component_name, req.key_name, req.algorithm, req.digest)
        return crypto_pb2.SubtleSignResponse(signature=sig)

    async def verify(req: Any) -> crypto_pb2.SubtleVerifyResponse:
        ok = await service.subtle_verify(
            req.component_name, req.key_name, req.algorithm, req.digest, req.signature
        )
        return crypto_pb2.SubtleVerifyResponse(valid=ok)

    return {
        "EncryptAlpha1": StreamRpc(encrypt),
        "DecryptAlpha1": StreamRpc(decrypt),
        "SubtleGetKeyAlpha1": get_key,
        "SubtleEncryptAlpha1": subtle_encrypt,
        "SubtleDecryptAlpha1": subtle_decrypt,
        "SubtleWrapKeyAlpha1": wrap_key,
        "SubtleUnwrapKeyAlpha1": unwrap_key,
        "SubtleSignAlpha1": sign,
        "SubtleVerifyAlpha1": verify,
    }
