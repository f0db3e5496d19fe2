"""`tandem dashboard`: a small web UI over this machine's mesh, served on 127.0.0.1.

The page (``static/``) is plain HTML and JavaScript with no outside asset. Its JSON comes
from here: ``/api/overview`` (control plane, apps, components, subscriptions, actors,
access control, traffic and resiliency policies, request counters) and ``/api/apps/<id>/
workflows...``, which passes through to that app's sidecar workflow API (answers wrapped
as ``{"status", "body"}``). Actions (terminate,
purge, raise an event, pause, resume) must carry the ``x-tandem-dashboard`` header: another
origin's page cannot send it without a CORS preflight, which is never granted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tandem.cli import info
from tandem.cli.home import Home
from tandem.cli.records import running_apps
from tandem.cli.supervise import links
from tandem.dashboard.model import Sidecars

STATIC = Path(__file__).parent / "static"
ACTION_HEADER = "x-tandem-dashboard"
WORKFLOW_ACTIONS = ("terminate", "purge", "pause", "resume")
_WORKFLOWS = "/v1.0/workflows/dapr"


def _app(home: Home, app_id: str) -> dict[str, Any]:
    for app in running_apps(home):
        if app.get("app_id") == app_id:
            return app
    raise web.HTTPNotFound(
        text=f'{{"errorCode":"ERR_NOT_FOUND","message":"no running app {app_id}"}}',
        content_type="application/json",
    )


def _answer(status: int, body: Any) -> web.Response:
    """The sidecar's answer, wrapped: ``{"status": its HTTP status (0: no answer), "body"}``.
    The page reads the sidecar's status from the body, and the browser logs no failed
    resource for an API a runtime does not serve."""
    return web.json_response({"status": status, "body": body})


def make_app(home: Home) -> web.Application:
    app = web.Application()
    state: dict[str, Sidecars] = {}

    async def open_session(_: web.Application) -> Any:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        state["sidecars"] = Sidecars(session)
        yield
        await session.close()

    app.cleanup_ctx.append(open_session)

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def overview(_: web.Request) -> web.Response:
        apps = running_apps(home)
        link_list = await links(apps)
        views = await asyncio.gather(*(state["sidecars"].app_view(a) for a in apps))
        return web.json_response(
            {
                "controlPlane": info.status(home, apps, link_list)["controlPlane"],
                "apps": list(views),
            }
        )

    async def workflows(req: web.Request) -> web.Response:
        target = _app(home, req.match_info["app_id"])
        query = f"?{req.query_string}" if req.query_string else ""
        return _answer(*await state["sidecars"].request(target, "GET", _WORKFLOWS + query))

    async def workflow(req: web.Request) -> web.Response:
        target = _app(home, req.match_info["app_id"])
        iid = req.match_info["instance"]
        sidecars = state["sidecars"]
        (status, body), (h_status, history) = await asyncio.gather(
            sidecars.request(target, "GET", f"{_WORKFLOWS}/{iid}"),
            sidecars.request(target, "GET", f"{_WORKFLOWS}/{iid}/history"),
        )
        if status != 200 or not isinstance(body, dict):
            return _answer(status, body)
        return _answer(status, {**body, "history": history if h_status == 200 else None})

    async def action(req: web.Request) -> web.Response:
        if req.headers.get(ACTION_HEADER) != "1":
            return web.json_response(
                {
                    "errorCode": "ERR_FORBIDDEN",
                    "message": f"actions need the {ACTION_HEADER} header",
                },
                status=403,
            )
        target = _app(home, req.match_info["app_id"])
        iid, verb = req.match_info["instance"], req.match_info["action"]
        sidecars = state["sidecars"]
        if verb == "raiseEvent":
            event = req.query.get("event", "")
            if not event:
                return web.json_response(
                    {"errorCode": "ERR_BAD_REQUEST", "message": "the event name is missing"},
                    status=400,
                )
            payload = await req.json() if req.can_read_body else None
            path = f"{_WORKFLOWS}/{iid}/raiseEvent/{event}"
            return _answer(*await sidecars.request(target, "POST", path, payload))
        if verb not in WORKFLOW_ACTIONS:
            raise web.HTTPNotFound()
        return _answer(*await sidecars.request(target, "POST", f"{_WORKFLOWS}/{iid}/{verb}"))

    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/apps/{app_id}/workflows", workflows)
    app.router.add_get("/api/apps/{app_id}/workflows/{instance}", workflow)
    app.router.add_post("/api/apps/{app_id}/workflows/{instance}/{action}", action)
    return app


def serve(home: Home, port: int, host: str = "127.0.0.1") -> None:
    print(f"tandem dashboard: http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    web.run_app(make_app(home), host=host, port=port, print=None, access_log=None)
