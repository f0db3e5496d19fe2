"""Run against a sidecar (DAPR_HTTP_PORT / DAPR_GRPC_PORT set): the official SDK reads
secrets as Dapr's examples do and prints what it got, one JSON line per call."""

from __future__ import annotations

import json
import sys

from dapr.clients import DaprClient

store = sys.argv[1]
with DaprClient() as client:
    print(json.dumps({"get": dict(client.get_secret(store, "db-password").secret)}), flush=True)
    print(json.dumps({"bulk": sorted(client.get_bulk_secret(store).secrets)}), flush=True)
    try:
        client.get_secret(store, "forbidden")
    except Exception as exc:
        print(json.dumps({"denied": str(exc)}), flush=True)
