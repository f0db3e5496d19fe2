"""Run under `tandem run`: one transaction with the official SDK on an outbox-enabled
store, then exit at once (as a short-lived job would).

    python sdk_outbox.py STORE TAG COUNT

Upserts COUNT keys ``TAG-0``..``TAG-{COUNT-1}``, each value ``{"tag": TAG, "n": i}``, in one
``execute_state_transaction``; prints ``committed`` and exits 0.
"""

from __future__ import annotations

import json
import sys

from dapr.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation


def main() -> None:
    store, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ops = [
        TransactionalStateOperation(key=f"{tag}-{i}", data=json.dumps({"tag": tag, "n": i}))
        for i in range(count)
    ]
    with DaprClient() as client:
        client.execute_state_transaction(store, ops)
    print("committed", flush=True)


if __name__ == "__main__":
    main()
