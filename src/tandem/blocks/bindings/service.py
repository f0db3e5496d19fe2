"""Dapr's output binding API, shared by the HTTP and gRPC front doors.

Resolves the binding (with Dapr's errors), checks the operation, calls the component
under its outbound Resiliency policy, with Dapr's binding metrics and a client span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind

from tandem.blocks.bindings.binding import (
    BindingError,
    InputBinding,
    InvokeRequest,
    InvokeResponse,
    OutputBinding,
)
from tandem.blocks.component_metadata import ComponentConfigError, lookup
from tandem.blocks.errors import DaprError
from tandem.blocks.registry import ComponentContext, ComponentSpec, create_component
from tandem.blocks.resiliency import Resilient
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.observability.tracing import NO_TRACING, Tracing, current_traceparent

log = logging.getLogger("tandem.bindings")

_DIRECTIONS = frozenset({"input", "output"})


def directions(name: str, metadata: Mapping[str, str]) -> frozenset[str] | None:
    """The ``direction`` metadata (``input``, ``output``, ``input, output``); None if unset."""
    text = lookup(metadata, "direction")
    if text is None or not text.strip():
        return None
    found = frozenset(p.strip().lower() for p in text.split(",") if p.strip())
    if not found or not found <= _DIRECTIONS:
        raise ComponentConfigError(
            f'binding {name}: direction {text!r} is not input, output or "input, output"'
        )
    return found


@dataclass(slots=True)
class BindingComponent:
    name: str
    type: str
    component: Any
    version: str = "v1"
    direction: frozenset[str] | None = None
    route: str = ""
    runner: Resilient | None = None

    @property
    def output(self) -> OutputBinding | None:
        if self.direction is not None and "output" not in self.direction:
            return None
        if not isinstance(self.component, OutputBinding) or not self.component.operations:
            return None
        return self.component

    @property
    def input(self) -> InputBinding | None:
        if self.direction is not None and "input" not in self.direction:
            return None
        # A component that can read but was given nothing to read says so with ``reads``.
        if not isinstance(self.component, InputBinding) or not getattr(
            self.component, "reads", True
        ):
            return None
        return self.component

    @property
    def path(self) -> str:
        """Where the app gets this binding's events: ``route`` or ``/<name>``."""
        route = self.route or self.name
        return route if route.startswith("/") else "/" + route


class InvokeFailedError(DaprError):
    """ERR_INVOKE_OUTPUT_BINDING with the component's response metadata (sent as headers)."""

    def __init__(self, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__("ERR_INVOKE_OUTPUT_BINDING", message)
        self.metadata: Mapping[str, str] = metadata or {}


# Told of each binding swapped by hot reload: its name and what serves it now (None: gone).
SwapWatcher = Callable[[str, "BindingComponent | None"], Awaitable[None]]


class BindingsService:
    def __init__(self, components: Iterable[BindingComponent]) -> None:
        self._components = {c.name: c for c in components}
        self.tracing: Tracing = NO_TRACING
        self.metrics: RuntimeMetrics = NO_METRICS
        self.watchers: list[SwapWatcher] = []  # the input side, once the app is there

    @staticmethod
    def build(
        spec: ComponentSpec, ctx: ComponentContext, runner: Resilient | None = None
    ) -> BindingComponent:
        return BindingComponent(
            spec.name,
            spec.type,
            create_component(spec, ctx),
            spec.version,
            directions(spec.name, spec.metadata),
            lookup(spec.metadata, "route") or "",
            runner,
        )

    async def swap(self, name: str, new: BindingComponent | None) -> Any | None:
        """Serve ``new`` under ``name`` (None: remove it); the replaced component, to close.
        Its input side stops reading before this returns (the watchers see to it), so the
        old component is closed with nothing reading from it."""
        old = self._components.pop(name, None)
        if new is not None:
            self._components[name] = new
        for watcher in self.watchers:
            await watcher(name, new)
        return None if old is None else old.component

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[ComponentSpec],
        ctx: ComponentContext,
        runner_for: Callable[[str], Resilient | None] | None = None,
    ) -> BindingsService:
        """``runner_for`` gives each binding's outbound Resiliency runner (None: bare)."""
        return cls(
            cls.build(spec, ctx, runner_for(spec.name) if runner_for else None)
            for spec in specs
            if spec.type.startswith("bindings.")
        )

    @property
    def components(self) -> Mapping[str, BindingComponent]:
        return self._components

    def inputs(self) -> list[BindingComponent]:
        return [c for c in self._components.values() if c.input is not None]

    async def invoke(
        self, name: str, operation: str, data: bytes, metadata: Mapping[str, str]
    ) -> InvokeResponse:
        comp = self._components.get(name)
        binding = comp.output if comp is not None else None
        if comp is None or binding is None:
            raise InvokeFailedError(
                f"error invoking output binding {name}: couldn't find output binding {name}"
            )
        if operation not in binding.operations:
            supported = ", ".join(sorted(binding.operations))
            raise InvokeFailedError(
                f"error invoking output binding {name}: binding {name} does not support "
                f"operation {operation}. supported operations: {supported}"
            )
        start = time.perf_counter()
        ok = False
        try:
            if self.tracing.enabled:
                attrs = {"dapr.component.type": comp.type, "dapr.component.name": name}
                with self.tracing.span(f"{operation} {name}", SpanKind.CLIENT, attrs):
                    response = await self._call(comp, binding, _request(operation, data, metadata))
            else:
                response = await self._call(comp, binding, _request(operation, data, metadata))
            ok = True
            return response
        except BindingError as exc:
            raise InvokeFailedError(
                f"error invoking output binding {name}: {exc}", exc.metadata
            ) from exc
        except DaprError:
            raise
        except Exception as exc:  # a client library's own error
            raise InvokeFailedError(f"error invoking output binding {name}: {exc}") from exc
        finally:
            self.metrics.output_binding(name, operation, ok, (time.perf_counter() - start) * 1000)

    @staticmethod
    async def _call(
        comp: BindingComponent, binding: OutputBinding, request: InvokeRequest
    ) -> InvokeResponse:
        if comp.runner is None:
            return await binding.invoke(request)
        return await comp.runner.call(lambda: binding.invoke(request))

    async def close(self) -> None:
        for comp in self._components.values():
            try:
                await comp.component.close()
            except Exception:
                log.exception("closing binding %s failed", comp.name)


def _request(operation: str, data: bytes, metadata: Mapping[str, str]) -> InvokeRequest:
    """The component's request, carrying the current trace context as Dapr does."""
    md = dict(metadata)
    traceparent = current_traceparent()
    if traceparent:
        md["traceparent"] = traceparent
    return InvokeRequest(operation, data, md)
