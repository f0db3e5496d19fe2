"""A request that does not decode is the caller's mistake: INVALID_ARGUMENT, not UNKNOWN.

grpc.aio decodes a request before any handler runs, and a ``DecodeError`` there becomes
``UNKNOWN: Unexpected <class ...DecodeError>``. This interceptor gives every handler a
deserializer that returns a marker instead of raising, and a handler wrapper that answers
the marker with INVALID_ARGUMENT (for streams, when the bad message is read).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

_ENVOY = "/envoy."

# grpc.aio's handler and context types are loosely typed; these wrappers pass them through.
Handler = Any


@dataclass(frozen=True, slots=True)
class _Undecodable:
    type_name: str


def undecodable_message(method: str, type_name: str) -> str:
    return f"the request to {method} could not be parsed as a {type_name} message"


def _message(method: str, bad: _Undecodable) -> str:
    return undecodable_message(method, bad.type_name)


def _tolerant(deserializer: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:
            owner = getattr(deserializer, "__self__", None)
            descriptor = getattr(owner, "DESCRIPTOR", None)
            return _Undecodable(getattr(descriptor, "name", "protobuf"))

    return parse


async def _checked(requests: AsyncIterator[Any], context: Any, method: str) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(method, request))
        yield request


def _wrap_unary(inner: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(inner):

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(method, request))
            async for response in inner(request, context):
                yield response

        return unary_stream

    async def unary(request: Any, context: Any) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(method, request))
        result = inner(request, context)
        return await result if inspect.isawaitable(result) else result

    return unary


def _wrap_stream(inner: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(inner):

        async def stream_stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async for response in inner(_checked(requests, context, method), context):
                yield response

        return stream_stream

    async def stream(requests: AsyncIterator[Any], context: Any) -> Any:
        result = inner(_checked(requests, context, method), context)
        return await result if inspect.isawaitable(result) else result

    return stream


class InvalidMessageInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.request_deserializer is None or method.startswith(_ENVOY):
            # Envoy's own ext_proc stream is well-formed and on the hot path: left alone.
            return handler
        parse = _tolerant(handler.request_deserializer, method)
        out = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method), parse, out
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_unary(handler.unary_stream, method), parse, out
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_stream(handler.stream_unary, method), parse, out
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method), parse, out
        )
