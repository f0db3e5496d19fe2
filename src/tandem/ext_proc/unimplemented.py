"""Dapr APIs this runtime does not serve yet, answered one way until each block exists.

HTTP: 501 with Dapr's ``ERR_API_UNIMPLEMENTED`` naming the API, through either front door
(both end in the router). gRPC: UNIMPLEMENTED naming the API, for every method of the Dapr
service without an implementation. A block
that lands removes its prefixes from :data:`HTTP_PREFIXES`; its gRPC methods leave the
unimplemented set by being implemented.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.descriptor import MethodDescriptor

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

log = logging.getLogger("tandem.runtime")

# (path prefix, API name): every route of Dapr's HTTP API under these prefixes.
HTTP_PREFIXES: tuple[tuple[str, str], ...] = ()
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

# The Dapr proto file a method's request type lives in names its API.
_API_BY_PROTO_FILE = {
    "invoke": "service invocation",
    "state": "state",
    "pubsub": "pub/sub",
    "binding": "bindings",
    "secret": "secrets",
    "actors": "actors",
    "configuration": "configuration",
    "lock": "distributed lock",
    "crypto": "cryptography",
    "metadata": "metadata",
    "workflow": "workflows",
    "dapr": "shutdown",
    "jobs": "jobs",
    "ai": "conversation",
    "search": "search",
    "vector": "vector store",
    "binarystore": "binary store",
}


def message(api: str) -> str:
    return f"the {api} API is not implemented by this Tandem runtime yet"


def error(api: str) -> DaprError:
    return DaprError("ERR_API_UNIMPLEMENTED", message(api))


def register_http(router: Router) -> None:
    """Add the 501 routes, before the blocks add theirs: a block's route for the same path
    and method replaces the 501, and any other route under a prefix takes precedence (the
    router tries literal and parameter segments before a rest parameter)."""
    for prefix, api in HTTP_PREFIXES:
        router.add(_METHODS, f"{prefix}/{{rest...}}", _handler(api))
        router.add(_METHODS, prefix, _handler(api))


def _handler(api: str) -> Any:
    async def unimplemented(req: ApiRequest) -> ApiResponse:
        raise error(api)

    return unimplemented


def grpc_message_for(name: str) -> str:
    """The UNIMPLEMENTED message for the Dapr service's method ``name``."""
    from dapr.proto.runtime.v1 import dapr_pb2

    return grpc_message(dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods_by_name[name])


def api_of(method: MethodDescriptor) -> str:
    """The API a Dapr gRPC method belongs to, e.g. ``InvokeBinding`` -> ``bindings``."""
    stem = method.input_type.file.name.rsplit("/", 1)[-1].removesuffix(".proto")
    return _API_BY_PROTO_FILE.get(stem, method.name)


def grpc_message(method: MethodDescriptor) -> str:
    return f"{message(api_of(method))} ({method.name})"
