"""The app's health as the runtime sees it, for Envoy: ``GET /`` on a Unix socket answers
200 while the app is healthy and 503 while it is not.

Envoy health-checks its ``local_app`` cluster here (translate/app_health.py) rather than
probing the app itself: one prober (the runtime, with Dapr's probe for each app protocol)
and one verdict for deliveries and invocations alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from tandem.blocks.app_health import AppHealth


async def serve_app_health(health: AppHealth, path: Path) -> None:
    """Serve until cancelled."""
    from aiohttp import web  # only with --enable-app-health-check

    async def verdict(_: web.Request) -> web.Response:
        return web.Response(status=200 if health.healthy else 503)

    app = web.Application()
    app.router.add_get("/", verdict)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        await web.UnixSite(runner, str(path)).start()
        await asyncio.to_thread(path.chmod, 0o600)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
