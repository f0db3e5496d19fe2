"""The conversation block: named components, each behind its Resiliency policy, its
response cache (``cacheTTL``) and a tracing span; answers scrubbed on request."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from opentelemetry.trace import SpanKind

from tandem.blocks.component_metadata import ComponentConfigError, as_seconds, lookup
from tandem.blocks.conversation.cache import ResponseCache
from tandem.blocks.conversation.component import ConversationComponent, ProviderError
from tandem.blocks.conversation.model import Request, Result
from tandem.blocks.conversation.scrub import scrub
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.resiliency import CircuitOpenError, Resilient
from tandem.observability.tracing import NO_TRACING, Tracing

log = logging.getLogger("tandem.runtime")


@dataclass(slots=True)
class Conversation:
    name: str
    type: str
    component: ConversationComponent
    runner: Resilient | None = None
    cache: ResponseCache | None = None


def is_failure(exc: BaseException) -> bool:
    """A provider's refusal (bad request, auth) is its answer, not a failure to retry."""
    return not isinstance(exc, ProviderError) or exc.retriable


class ConversationService:
    def __init__(self, components: Iterable[Conversation]) -> None:
        self._components = {c.name: c for c in components}
        self.tracing: Tracing = NO_TRACING

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[ComponentSpec],
        ctx: ComponentContext,
        runner_for: Callable[[str], Resilient | None] = lambda _: None,
    ) -> ConversationService:
        return cls(
            cls.build(spec, ctx, runner_for(spec.name))
            for spec in specs
            if spec.type.startswith("conversation.")
        )

    @staticmethod
    def build(spec: ComponentSpec, ctx: ComponentContext, runner: Resilient | None) -> Conversation:
        ttl = as_seconds("cacheTTL", lookup(spec.metadata, "cacheTTL"), 0.0)
        if ttl < 0:
            raise ComponentConfigError(f"component {spec.name}: cacheTTL must not be negative")
        component = cast(ConversationComponent, create_component(spec, ctx))
        cache = ResponseCache(ttl) if ttl > 0 else None
        return Conversation(spec.name, spec.type, component, runner, cache)

    async def swap(self, name: str, new: Conversation | None) -> ConversationComponent | None:
        """Serve ``new`` under ``name`` (None: remove it); the replaced one, to close."""
        old = self._components.pop(name, None)
        if new is not None:
            self._components[name] = new
        return None if old is None else old.component

    @property
    def components(self) -> Mapping[str, Conversation]:
        return self._components

    def component(self, name: str) -> Conversation:
        found = self._components.get(name)
        if found is not None:
            return found
        if not self._components:
            raise DaprError(
                "ERR_CONVERSATION_NOT_FOUND", "no conversation components are configured"
            )
        raise DaprError("ERR_CONVERSATION_NOT_FOUND", f"conversation {name} not found")

    async def converse(self, name: str, request: Request, *, scrub_answers: bool = False) -> Result:
        conv = self.component(name)
        if not request.messages:
            raise DaprError("ERR_CONVERSATION_MISSING_INPUTS", "no inputs were given")
        result = conv.cache.get(request) if conv.cache is not None else None
        if result is None:
            result = await self._call(conv, request)
            if conv.cache is not None:
                conv.cache.put(request, result)
        return _scrubbed(result) if scrub_answers else result

    async def _call(self, conv: Conversation, request: Request) -> Result:
        attrs = {
            "gen_ai.system": conv.type.removeprefix("conversation."),
            "gen_ai.operation.name": "chat",
            "dapr.component.name": conv.name,
            "dapr.component.type": conv.type,
        }
        try:
            with self.tracing.span(f"conversation/{conv.name}", SpanKind.CLIENT, attrs):
                if conv.runner is None:
                    return await conv.component.converse(request)
                return await conv.runner.call(
                    lambda: conv.component.converse(request), is_failure=is_failure
                )
        except (ProviderError, CircuitOpenError, TimeoutError) as exc:
            text = str(exc) or type(exc).__name__
            raise DaprError(
                "ERR_CONVERSATION_INVOKE", f"error invoking conversation {conv.name}: {text}"
            ) from exc

    async def close(self) -> None:
        for conv in self._components.values():
            try:
                await conv.component.close()
            except Exception:  # one component's failure to close must not keep others open
                log.exception("closing conversation component %s", conv.name)


def _scrubbed(result: Result) -> Result:
    choices = tuple(
        dataclasses.replace(
            c,
            text=scrub(c.text),
            tool_calls=tuple(
                dataclasses.replace(t, arguments=scrub(t.arguments)) for t in c.tool_calls
            ),
        )
        for c in result.choices
    )
    return dataclasses.replace(result, choices=choices)
