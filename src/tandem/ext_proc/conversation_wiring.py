"""The conversation block's part of the wiring: components, routes, RPCs, metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tandem.blocks.conversation.service import ConversationService
from tandem.blocks.metadata import ComponentInfo
from tandem.blocks.registry import ComponentContext, ComponentSpec
from tandem.blocks.resiliency import Resilient, resilient
from tandem.ext_proc import conversation_grpc, conversation_http
from tandem.ext_proc.reload import SwapReload
from tandem.ext_proc.router import Router
from tandem.observability.tracing import Tracing
from tandem.resources import Resiliency
from tandem.resources.resiliency import component_policy

if TYPE_CHECKING:
    from tandem.ext_proc.blocks_wiring import Wiring


def wire_conversation(
    wiring: Wiring,
    router: Router,
    specs: Sequence[ComponentSpec],
    ctx: ComponentContext,
    resiliencies: Sequence[Resiliency],
    tracing: Tracing,
) -> ConversationService:
    def runner_for(name: str, policies: Sequence[Resiliency] = resiliencies) -> Resilient | None:
        return resilient(component_policy(policies, name, "outbound"), name)

    service = ConversationService.from_specs(specs, ctx, runner_for)
    wiring.swaps.append(
        SwapReload(
            "conversation",
            lambda spec, policies: ConversationService.build(
                spec, ctx, runner_for(spec.name, policies)
            ),
            service.swap,
        )
    )
    service.tracing = tracing
    conversation_http.register(router, service)
    wiring.rpcs.update(conversation_grpc.rpcs(service))
    for spec in specs:
        if spec.name in service.components:
            wiring.components.append(ComponentInfo(spec.name, spec.type, spec.version, ()))
    wiring.closers.append(service.close)
    return service
