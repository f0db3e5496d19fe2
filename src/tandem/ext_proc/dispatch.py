"""Route an ApiRequest to its handler and turn every failure into Dapr's answer."""

from __future__ import annotations

import logging

from tandem.blocks.errors import DaprError
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router
from tandem.observability import tracing

log = logging.getLogger("tandem.ext_proc")


class Dispatcher:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def __call__(self, req: ApiRequest) -> ApiResponse:
        # Envoy's span (its router's traceparent) is the parent of the blocks' spans.
        with tracing.incoming(req.headers):
            return await self._answer(req)

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
