"""The cryptography API over HTTP: ``PUT|POST /v1.0-alpha1/crypto/{component}/encrypt|decrypt``
with Dapr's ``dapr-*`` headers (the body is the whole stream, as Dapr's HTTP door is "for
development"), and ``/v1.0-alpha1/subtlecrypto/{component}/<op>`` whose bodies are the JSON
form of the gRPC requests, answered through the same RPC implementations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from dapr.proto.runtime.v1 import crypto_pb2

from tandem.blocks.component_metadata import as_bool
from tandem.blocks.crypto.service import CryptoService, EncryptOptions, bad_request
from tandem.ext_proc import crypto_grpc
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.proto_json import parse, render
from tandem.ext_proc.router import Router

OCTETS = b"application/octet-stream"

_SUBTLE: dict[str, tuple[str, type[Any]]] = {
    "getkey": ("SubtleGetKeyAlpha1", crypto_pb2.SubtleGetKeyRequest),
    "encrypt": ("SubtleEncryptAlpha1", crypto_pb2.SubtleEncryptRequest),
    "decrypt": ("SubtleDecryptAlpha1", crypto_pb2.SubtleDecryptRequest),
    "wrapkey": ("SubtleWrapKeyAlpha1", crypto_pb2.SubtleWrapKeyRequest),
    "unwrapkey": ("SubtleUnwrapKeyAlpha1", crypto_pb2.SubtleUnwrapKeyRequest),
    "sign": ("SubtleSignAlpha1", crypto_pb2.SubtleSignRequest),
    "verify": ("SubtleVerifyAlpha1", crypto_pb2.SubtleVerifyRequest),
}


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def register(router: Router, service: CryptoService) -> None:
    table = crypto_grpc.rpcs(service)

    async def encrypt(req: ApiRequest) -> ApiResponse:
        component = req.params["component"]
        service.provider(component)
        h = req.headers
        key_name = h.get("dapr-key-name", "")
        if not key_name:
            raise bad_request("missing header 'dapr-key-name'")
        algorithm = h.get("dapr-key-wrap-algorithm", "")
        if not algorithm:
            raise bad_request("missing header 'dapr-key-wrap-algorithm'")
        options = EncryptOptions(
            key_name=key_name,
            key_wrap_algorithm=algorithm,
            data_encryption_cipher=h.get("dapr-data-encryption-cipher", ""),
            omit_decryption_key_name=as_bool(h.get("dapr-omit-decryption-key-name")),
            decryption_key_name=h.get("dapr-decryption-key-name", ""),
        )
        out = await service.encrypt(component, options, _one(req.body))
        return ApiResponse(status=200, body=await _collect(out), content_type=OCTETS)

    async def decrypt(req: ApiRequest) -> ApiResponse:
        component = req.params["component"]
        service.provider(component)
        out = await service.decrypt(component, req.headers.get("dapr-key-name", ""), _one(req.body))
        return ApiResponse(status=200, body=await _collect(out), content_type=OCTETS)

    # Dapr serves alpha1; its docs show /v1.0, so both work here.
    for base in ("/v1.0-alpha1/crypto/{component}", "/v1.0/crypto/{component}"):
        router.add(("PUT", "POST"), base + "/encrypt", encrypt)
        router.add(("PUT", "POST"), base + "/decrypt", decrypt)

    for op, (rpc, message) in _SUBTLE.items():
        router.add(
            "POST",
            f"/v1.0-alpha1/subtlecrypto/{{component}}/{op}",
            _subtle(table[rpc], message, service),
        )


def _subtle(
    impl: Any, message: type[Any], service: CryptoService
) -> Callable[[ApiRequest], Awaitable[ApiResponse]]:
    async def handle(req: ApiRequest) -> ApiResponse:
        component = req.params["component"]
        service.provider(component)
        msg = parse(req.body, message())
        msg.component_name = component
        return render(await impl(msg))

    return handle
