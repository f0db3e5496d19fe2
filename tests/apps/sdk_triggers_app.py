"""A gRPC app written with the official SDK (``dapr.ext.grpc.App``) that serves the input
binding ``ticks`` and the job ``sdk-job``; each trigger is one JSON line in LOG.

Usage: python sdk_triggers_app.py PORT LOG
"""

from __future__ import annotations

import json
import sys
import threading

from dapr.clients.grpc._request import BindingRequest, JobEvent
from dapr.ext.grpc import App

LOCK = threading.Lock()
app = App()


def record(kind: str, name: str, data: str) -> None:
    with LOCK, open(sys.argv[2], "a") as log:
        log.write(json.dumps({"kind": kind, "name": name, "data": data}) + "\n")


@app.binding("ticks")
def ticks(request: BindingRequest) -> None:
    record("binding", "ticks", request.text())


@app.job_event("sdk-job")
def job(event: JobEvent) -> None:
    record("job", event.name, event.get_data_as_string())


if __name__ == "__main__":
    app.run(int(sys.argv[1]))
