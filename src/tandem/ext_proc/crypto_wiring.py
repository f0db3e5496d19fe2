"""The cryptography block's part of the wiring: key providers, routes, RPCs, metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tandem.blocks.crypto.service import CryptoService
from tandem.blocks.metadata import ComponentInfo
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.ext_proc import crypto_grpc, crypto_http
from tandem.ext_proc.reload import SwapReload
from tandem.ext_proc.router import Router

if TYPE_CHECKING:
    from tandem.ext_proc.blocks_wiring import Wiring


def wire_crypto(
    wiring: Wiring, router: Router, specs: Sequence[ComponentSpec], ctx: ComponentContext
) -> CryptoService:
    service = CryptoService.from_specs(specs, ctx)
    wiring.swaps.append(
        SwapReload("crypto", lambda spec, _: CryptoService.build(spec, ctx), service.swap)
    )
    crypto_http.register(router, service)
    wiring.rpcs.update(crypto_grpc.rpcs(service))
    for spec in specs:
        if spec.name in service.components:
            wiring.components.append(ComponentInfo(spec.name, spec.type, spec.version, ()))
    wiring.closers.append(service.close)
    return service
