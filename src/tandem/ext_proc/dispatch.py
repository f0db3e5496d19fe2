"""Route an ApiRequest to its handler and turn every failure into Dapr's answer."""

from __future__ import annotations

import logging
import time

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router
from tandem.observability import tracing
from tandem.observability.metrics import NO_METRICS, RuntimeMetrics

log = logging.getLogger("tandem.ext_proc")


class Dispatcher:
    def __init__(self, router: Router, metrics: RuntimeMetrics = NO_METRICS) -> None:
        self._router = router
        self._metrics = metrics

    async def __call__(self, req: ApiRequest) -> ApiResponse:
        start = time.perf_counter()
        # Envoy's span (its router's traceparent) is the parent of the blocks' spans.
        with tracing.incoming(req.headers):
            resp = await self._answer(req)
        self._metrics.http(req.method, req.path, resp.status, (time.perf_counter() - start) * 1000)
        return resp

    async def _answer(self, req: ApiRequest) -> ApiResponse:
        try:
            handler = self._router.resolve(req)
            return await handler(req)
        except DaprError as err:
            if err.http_status >= 500:
                log.warning(
                    "api error",
                    extra={
                        "method": req.method,
                        "path": req.path,
                        "code": err.error_code,
                        "err": err.message,
                    },
                )
            return ApiResponse.error(err)
        except Exception as exc:  # the process keeps serving whatever a handler does
            log.exception("unhandled error in %s %s", req.method, req.path)
            return ApiResponse.error(DaprError("ERR_INTERNAL", f"internal error: {exc}"))
