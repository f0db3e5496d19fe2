"""Names the runtime and its Envoy's configuration must agree on. Kept free of Envoy's
protos: the runtime imports this, and the translate package would load them all."""

from __future__ import annotations

# Where the callee's Envoy hands its runtime's HTTP/1.1 door a plain HTTP invocation of a
# gRPC app, followed by the method (tandem.ext_proc.invoke_grpc_app serves it).
ONINVOKE_PREFIX = "/_tandem/oninvoke/"

# Actor calls forwarded between runtimes: the runtime names the owner's cluster in this
# header, and the owner's Envoy hands the call to its runtime under this prefix.
ACTOR_CLUSTER_HEADER = "x-tandem-actor-cluster"
ACTOR_INBOUND_PREFIX = "/_tandem/actors/"


def actor_host_cluster(node_id: str) -> str:
    """The cluster through which other runtimes reach ``node_id``'s actor host."""
    return f"actorhost|{node_id}"


# Set on bridged unary gRPC calls only (stripped from the HTTP API listener's): the runtime
# serves gRPC on its HTTP door only to calls that came through the gRPC port.
GRPC_BRIDGE_HEADER = "x-tandem-grpc-bridge"

# The durable-task service of the SDK's workflow client and worker.
TASK_HUB_SERVICE = "TaskHubSidecarService"
TASK_HUB_PATH = f"/{TASK_HUB_SERVICE}/"  # the prefix of its methods' gRPC paths

# A workflow's durable timer in the control plane's scheduler: routed like a reminder, to
# the owner of the instance (an id of the app's internal workflow actor type), which adds
# TimerFired to its inbox.
WORKFLOW_TIMER_KIND = "workflow-timer"
