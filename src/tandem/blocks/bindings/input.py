"""Input bindings' events delivered to the app, and Dapr's reading of its answer.

At start each input binding asks whether the app serves it: an HTTP app answers
``OPTIONS /<route>`` (2xx or 405: yes; anything else, 404 included: no, quietly), a gRPC
app lists its bindings (``ListInputBindings``). A served binding's events go to
``POST /<route>`` (body as read, metadata as headers) or ``OnBindingEvent``; only 200
(or an OK RPC) acknowledges, and a 200 body may ask for state saves and output binding
calls (Dapr's legacy app response, :mod:`.app_response`). A failed delivery is retried under the binding's inbound
Resiliency policy; what is still refused goes back to the component, which redelivers
if it can.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence

import grpc

from tandem.blocks.app_channel import AppChannel, AppChannelError
from tandem.blocks.app_grpc_channel import AppGrpcChannel
from tandem.blocks.bindings import app_response
from tandem.blocks.bindings.binding import InputEvent
from tandem.blocks.bindings.service import BindingComponent, BindingsService
from tandem.blocks.resiliency import resilient
from tandem.blocks.state.service import StateService
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics
from tandem.resources import Resiliency
from tandem.resources.resiliency import component_policy

log = logging.getLogger("tandem.bindings")

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class DeliveryFailedError(Exception):
    pass


def event_headers(event: InputEvent) -> dict[str, str]:
    """The event's metadata as HTTP headers (names HTTP cannot carry are left out)."""
    headers = {
        k: v.replace("\r", " ").replace("\n", " ")
        for k, v in event.metadata.items()
        if _TOKEN.match(k) and k.lower() not in ("content-length", "host")
    }
    headers.setdefault("content-type", "application/json")
    return headers


class InputBindings:
    def __init__(
        self,
        service: BindingsService,
        channel: AppChannel,
        grpc_channel: AppGrpcChannel | None = None,
        *,
        resiliencies: Sequence[Resiliency] = (),
        metrics: RuntimeMetrics = NO_METRICS,
        state: StateService | None = None,
    ) -> None:
        self._service = service
        self._state = state
        self._channel = channel
        self._grpc = grpc_channel
        self._resiliencies = resiliencies
        self._metrics = metrics
        self._tasks: dict[str, asyncio.Task[None]] = {}  # by binding name
        self._started = False
        service.watchers.append(self._swapped)

    @property
    def serving(self) -> list[str]:
        """The input bindings being read (the app serves them)."""
        return list(self._tasks)

    async def start(self) -> None:
        """Ask the app which bindings it serves and start reading those."""
        self._started = True
        inputs = self._service.inputs()
        if not inputs:
            return
        listed = await self._grpc_list() if self._grpc is not None else None
        for comp in inputs:
            await self._serve(comp, listed)

    async def _serve(self, comp: BindingComponent, listed: set[str] | None) -> None:
        if listed is not None:
            served = comp.name in listed
        else:
            served = await self._http_probe(comp)
        if not served:
            log.info("input binding %s: the app does not serve it; not read", comp.name)
            return
        if self._service.components.get(comp.name) is not comp or comp.name in self._tasks:
            return  # hot reload replaced it meanwhile, and reads its successor
        self._tasks[comp.name] = asyncio.create_task(self._read(comp), name=f"binding-{comp.name}")

    async def _swapped(self, name: str, new: BindingComponent | None) -> None:
        """Hot reload replaced or removed ``name``: stop reading the old component, and
        read the new one if the app serves it (asked again, as at start)."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not self._started or new is None or new.input is None:
            return
        listed = await self._grpc_list() if self._grpc is not None else None
        await self._serve(new, listed)

    async def _grpc_list(self) -> set[str]:
        assert self._grpc is not None
        try:
            return set(await self._grpc.list_input_bindings())
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                log.warning("ListInputBindings failed: %s", exc.details())
            return set()

    async def _http_probe(self, comp: BindingComponent) -> bool:
        try:
            resp = await self._channel.request("OPTIONS", comp.path, timeout=10)
        except AppChannelError as exc:
            log.warning("input binding %s: probing the app failed: %s", comp.name, exc)
            return False
        return 200 <= resp.status < 300 or resp.status == 405

    async def _read(self, comp: BindingComponent) -> None:
        binding = comp.input
        assert binding is not None
        policy = component_policy(self._resiliencies, comp.name, "inbound", "Bindings")
        runner = resilient(policy, comp.name)

        async def handle(event: InputEvent) -> bool:
            start = time.perf_counter()
            ok = False
            try:
                if runner is None:
                    await self._deliver(comp, event)
                else:
                    await runner.call(lambda: self._deliver(comp, event))
                ok = True
            except Exception as exc:  # the app refused or was unreachable: the component decides
                log.warning("input binding %s: delivery failed: %s", comp.name, exc)
            finally:
                self._metrics.input_binding(comp.name, ok, (time.perf_counter() - start) * 1000)
            return ok

        try:
            await binding.read(handle)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("input binding %s stopped reading", comp.name)

    async def _deliver(self, comp: BindingComponent, event: InputEvent) -> None:
        if self._grpc is not None:
            try:
                await self._grpc.on_binding_event(comp.name, event.data, event.metadata)
            except grpc.aio.AioRpcError as exc:
                raise DeliveryFailedError(f"OnBindingEvent: {exc.code().name}") from exc
            return
        try:
            resp = await self._channel.request(
                "POST", comp.path, body=event.data, headers=event_headers(event)
            )
        except AppChannelError as exc:
            raise DeliveryFailedError(str(exc)) from exc
        if resp.status != 200:
            raise DeliveryFailedError(f"the app answered HTTP {resp.status}")
        if resp.body.strip():
            await app_response.apply(
                app_response.parse(resp.body), comp.name, self._state, self._service
            )

    async def stop(self) -> None:
        if self._swapped in self._service.watchers:
            self._service.watchers.remove(self._swapped)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
