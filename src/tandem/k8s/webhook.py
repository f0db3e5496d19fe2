"""The injector's HTTPS server: ``POST /mutate`` (AdmissionReview) and ``GET /healthz``."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path

from aiohttp import web

from tandem.k8s.admission import ReviewError, review
from tandem.k8s.inject import InjectorSettings

log = logging.getLogger("tandem.k8s.webhook")
# An AdmissionReview of a large pod stays far below this; the API server sends at most 3 MiB.
_MAX_BODY = 8 << 20


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def make_app(settings: InjectorSettings) -> web.Application:
    async def mutate(request: web.Request) -> web.Response:
        try:
            body = await request.json(loads=json.loads)
        except ValueError:
            return web.json_response({"message": "the body is not JSON"}, status=400)
        try:
            answer = review(body, settings)
        except ReviewError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        response = answer["response"]
        log.info(
            "admission review",
            extra={
                "uid": response["uid"],
                "patched": "patch" in response,
                "warnings": response.get("warnings", []),
            },
        )
        return web.json_response(answer)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application(client_max_size=_MAX_BODY)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(settings: InjectorSettings, host: str, port: int, cert: Path, key: Path) -> None:
    """Serve until cancelled (SIGTERM, Ctrl-C)."""
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls_context(cert, key))
    await site.start()
    log.info("injector serving", extra={"address": f"{host}:{port}"})
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
