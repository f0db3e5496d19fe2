"""Run against a sidecar: the official SDK gets configuration, subscribes, sees a change
written to Redis (argv: store, key, redis host, port, password), unsubscribes. Prints one
JSON line per step."""

from __future__ import annotations

import json
import sys
import threading

import redis
from dapr.clients import DaprClient

store, key, host, port, password = sys.argv[1:6]
db = redis.Redis(host=host, port=int(port), password=password)
db.set(key, "before||1")
seen = threading.Event()
updates: list[dict[str, str]] = []


def handler(sub_id: str, resp) -> None:  # type: ignore[no-untyped-def]
    for k, item in resp.items.items():
        updates.append({"id": sub_id, "key": k, "value": item.value, "version": item.version})
    if any(u["value"] == "after" for u in updates):
        seen.set()


with DaprClient() as client:
    got = client.get_configuration(store, [key])
    item = got.items[key]
    print(json.dumps({"get": [item.value, item.version]}), flush=True)
    sub_id = client.subscribe_configuration(store, [key], handler)
    print(json.dumps({"subscribed": bool(sub_id)}), flush=True)
    db.set(key, "after||2")
    print(json.dumps({"update_seen": seen.wait(30), "updates": updates}), flush=True)
    print(json.dumps({"unsubscribed": client.unsubscribe_configuration(store, sub_id)}), flush=True)
