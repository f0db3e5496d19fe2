"""Run against a sidecar: the official SDK takes and releases a lock as Dapr's examples
do, and prints each outcome as one JSON line."""

from __future__ import annotations

import json
import sys
import uuid

from dapr.clients import DaprClient

store = sys.argv[1]
resource = f"sdk-{uuid.uuid4().hex}"
with DaprClient() as client:
    first = client.try_lock(store, resource, "owner-a", expiry_in_seconds=60)
    second = client.try_lock(store, resource, "owner-b", expiry_in_seconds=60)
    wrong = client.unlock(store, resource, "owner-b")
    right = client.unlock(store, resource, "owner-a")
    gone = client.unlock(store, resource, "owner-a")
    print(
        json.dumps(
            {
                "first": first.success,
                "second": second.success,
                "wrong": wrong.status.name,
                "right": right.status.name,
                "gone": gone.status.name,
            }
        ),
        flush=True,
    )
