"""A runtime worker (``tandem run --runtime-workers N``, worker index 1..N-1).

A worker loads the same resources as worker 0 (the owner) and serves the stateless API
paths Envoy sends it (``tandem.xds.translate.workers``): state, publish, output bindings,
secrets, configuration reads, crypto, conversation, locks. It starts none of the owner's
single-owner machinery: no app channel (so no subscription delivery, input bindings or app
health), no actors, jobs or workflows, no outbox relay. Hot reload runs in every worker on
its own (each watches the same files, as the owner does), so no worker keeps serving a
component the owner has removed or replaced for longer than one poll.

The start is the tail of :meth:`Runtime.start` minus those parts; it lives here so the
owner's path stays as it was (docs/design/runtime-workers.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tandem.blocks.registry import ComponentContext
from tandem.ext_proc import meta_http
from tandem.ext_proc.blocks_wiring import Wiring
from tandem.ext_proc.invoke_service import InvokeService

if TYPE_CHECKING:
    from tandem.ext_proc.runtime import Runtime

log = logging.getLogger("tandem.runtime")

# state.in-memory, pubsub.in-memory: the data lives in the process.
IN_PROCESS_SUFFIX = ".in-memory"


async def start_worker(runtime: Runtime, wiring: Wiring, ctx: ComponentContext) -> None:
    """Finish starting ``runtime`` as a worker, its blocks already wired."""
    from tandem.ext_proc.runtime import StartupError
    from tandem.observability.metrics_server import MetricsServer

    options = runtime.options
    for component in wiring.components:
        if component.type.endswith(IN_PROCESS_SUFFIX):
            # Each process would hold its own copy: a save at one worker, unseen at another.
            raise StartupError(
                f"component {component.name} ({component.type}) keeps its data inside one "
                "runtime process, so --runtime-workers above 1 would split it between them; "
                "use one runtime process, or a store the processes share (sqlite, redis, ...)"
            )
    runtime._start_reloader(wiring, ctx)
    resources = runtime._resources
    runtime._metrics.loaded(
        len(wiring.components), [r.name for r in resources.resiliencies] if resources else ()
    )
    if options.metrics_socket is not None:
        # Its own Dapr series; the owner folds them into its /metrics (metrics_fold.py).
        metrics_server = MetricsServer(runtime._metrics, options.metrics_socket, None)
        await metrics_server.start()
        runtime._closers.append(metrics_server.stop)
    meta_http.register(runtime.router, runtime.health, runtime.metadata, runtime.request_shutdown)
    invoke_service = InvokeService(options.dapr_http_port)
    wiring.rpcs["InvokeService"] = invoke_service
    runtime._closers.append(invoke_service.close)
    await runtime._serve(wiring.rpcs)
    runtime.health.mark_ready("components")
    log.info(
        "runtime worker ready",
        extra={
            "app_id": options.app_id,
            "worker": options.worker_index,
            "socket": str(options.socket),
            "components": [c.name for c in wiring.components],
        },
    )
