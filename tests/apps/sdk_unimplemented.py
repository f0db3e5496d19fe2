"""Calls, with the official SDK as Dapr's examples do, the APIs that once answered
UNIMPLEMENTED (a lock, a workflow), and prints how each went. A sidecar that made the SDK
hang would make this never finish."""

from __future__ import annotations

import grpc
from dapr.clients import DaprClient
from dapr.ext.workflow import DaprWorkflowClient, DaprWorkflowContext, WorkflowRuntime

wfr = WorkflowRuntime()


@wfr.workflow(name="hello_world")
def hello_world(ctx: DaprWorkflowContext, name: str) -> str:
    return f"hello {name}"


def report(what: str, exc: Exception) -> None:
    code = exc.code() if isinstance(exc, grpc.RpcError) else type(exc).__name__
    details = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
    print(f"{what} failed: {code}: {details}", flush=True)


with DaprClient() as d:
    try:
        with d.try_lock("lockstore", "order-1", "owner-1", 10) as lock:
            print(f"try_lock success={lock.success}", flush=True)
    except Exception as exc:
        report("try_lock", exc)

wfr.start()
print("workflow runtime started", flush=True)
try:
    client = DaprWorkflowClient()
    client.schedule_new_workflow(workflow=hello_world, input="tandem")
    print("schedule_new_workflow succeeded", flush=True)
except Exception as exc:
    report("schedule_new_workflow", exc)
finally:
    wfr.shutdown()
print("done", flush=True)
