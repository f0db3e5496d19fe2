"""The placement stream's wire format: JSON objects over a gRPC bidi stream.

A small internal protocol between Tandem's own processes (the runtime and the control
plane), so it is JSON through gRPC's generic handlers rather than a compiled proto: one
object per message, with exactly one key naming its kind.

runtime -> control plane: ``hello`` {host, app_id, types, jobs}, ``prepared`` "e.n",
``renew`` <number echoed back>, ``fired`` {id, outcome}.
control plane -> runtime: ``welcome`` {lease, epoch}, ``prepare`` {version, hosts},
``commit`` "e.n", ``granted`` <number>, ``fire`` {id, type, actor, name, payload, due, ...},
``job`` {id, name, data, due, fired} (answered with ``fired``).
"""

from __future__ import annotations

from typing import Any

import grpc
import orjson

from tandem.placement.table import Table, Version

SERVICE = "tandem.placement.v1.Placement"
CONNECT = f"/{SERVICE}/Connect"
REMINDERS = "tandem.scheduler.v1.Reminders"
JOBS = "tandem.scheduler.v1.Jobs"


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def decode(data: bytes) -> dict[str, Any]:
    value = orjson.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a placement message is a JSON object")
    return value


def table_message(table: Table) -> dict[str, Any]:
    return {
        "prepare": {
            "version": str(table.version),
            "hosts": {h: sorted(ts) for h, ts in sorted(table.membership().items())},
        }
    }


def table_from(message: dict[str, Any]) -> Table:
    hosts = {h: frozenset(ts) for h, ts in message["hosts"].items()}
    return Table.build(Version.parse(message["version"]), hosts)


def unary(channel: grpc.aio.Channel, service: str, method: str) -> Any:
    """A JSON unary call on ``channel`` (the reminder API)."""
    return channel.unary_unary(
        f"/{service}/{method}", request_serializer=encode, response_deserializer=decode
    )
