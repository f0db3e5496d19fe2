"""Dapr's legacy answer to an input binding event: the app's 200 body may ask the runtime
to save state and to call output bindings.

``{"storeName": "s", "state": [{"key": "k", "value": <JSON>}], "to": ["out1"],
"concurrency": "parallel" | "sequential", "data": <JSON>}``: the values are saved in
``storeName``; ``data`` (its JSON text) goes to each binding in ``to`` as ``create``.
A body that is not such an object asks for nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import orjson

from tandem.blocks.bindings.service import BindingsService
from tandem.blocks.errors import DaprError
from tandem.blocks.state.service import StateService
from tandem.blocks.state.store import SetRequest

log = logging.getLogger("tandem.bindings")


@dataclass(frozen=True, slots=True)
class AppResponse:
    store: str = ""
    state: tuple[SetRequest, ...] = ()
    to: tuple[str, ...] = ()
    parallel: bool = False
    data: bytes = b""
    problems: tuple[str, ...] = field(default=(), compare=False)


def parse(body: bytes) -> AppResponse:
    """What the app's answer asks for (pure; ``problems`` names what was unusable)."""
    try:
        value = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        return AppResponse()
    if not isinstance(value, dict):
        return AppResponse()
    problems: list[str] = []
    items: list[SetRequest] = []
    for item in value.get("state") or []:
        if isinstance(item, dict) and isinstance(item.get("key"), str) and "value" in item:
            items.append(SetRequest(item["key"], orjson.dumps(item["value"])))
        else:
            problems.append(f"state item {item!r} has no key and value")
    to = value.get("to") or []
    if not isinstance(to, list) or not all(isinstance(t, str) for t in to):
        problems.append('"to" is not a list of binding names')
        to = []
    store = value.get("storeName") if isinstance(value.get("storeName"), str) else ""
    if items and not store:
        problems.append('"state" without "storeName"')
        items = []
    data = orjson.dumps(value["data"]) if value.get("data") is not None else b""
    return AppResponse(
        store or "",
        tuple(items),
        tuple(to),
        value.get("concurrency") == "parallel",
        data,
        tuple(problems),
    )


async def apply(
    answer: AppResponse, binding: str, state: StateService | None, bindings: BindingsService
) -> None:
    """Do what the answer asks; failures are logged (the event itself was taken)."""
    for problem in answer.problems:
        log.warning("input binding %s: the app's answer: %s", binding, problem)
    if answer.state:
        try:
            if state is None:
                raise DaprError("ERR_STATE_STORE_NOT_CONFIGURED", "no state store is configured")
            await state.save(answer.store, answer.state)
        except DaprError as exc:
            log.warning("input binding %s: saving the app's state failed: %s", binding, exc)
    calls = [bindings.invoke(name, "create", answer.data, {}) for name in answer.to]
    if answer.parallel:
        results = await asyncio.gather(*calls, return_exceptions=True)
    else:
        results = []
        for call in calls:
            try:
                results.append(await call)
            except DaprError as exc:
                results.append(exc)
    for name, result in zip(answer.to, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("input binding %s: output binding %s failed: %s", binding, name, result)
