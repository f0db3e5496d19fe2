"""The workflow HTTP API, under Dapr's three prefixes (``/v1.0``, ``/v1.0-beta1``,
``/v1.0-alpha1``), plus Tandem's filtered listing and batch purge/terminate."""

from __future__ import annotations

from tandem.blocks.errors import DaprError
from tandem.blocks.workflows.management import START_TIME_OPTION, WorkflowApi, parse_filter
from tandem.ext_proc.api import ApiRequest, ApiResponse
from tandem.ext_proc.router import Router

PREFIXES = ("/v1.0", "/v1.0-beta1", "/v1.0-alpha1")
ACCEPTED = 202


def _text(body: bytes) -> str | None:
    if not body:
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise DaprError(
            "ERR_MALFORMED_REQUEST", "the workflow input must be UTF-8 text", http_status=400
        ) from None


def _query(req: ApiRequest, key: str) -> str:
    return (req.query_values().get(key) or [""])[-1]


def _flag(req: ApiRequest, key: str) -> bool:
    return _query(req, key).lower() == "true"


def register(router: Router, api: WorkflowApi) -> None:
    async def start(req: ApiRequest) -> ApiResponse:
        p = req.params
        instance_id = await api.start(
            p["component"],
            p["target"],
            _query(req, "instanceID"),
            _text(req.body),
            _query(req, START_TIME_OPTION),
        )
        return ApiResponse.json({"instanceID": instance_id}, ACCEPTED)

    async def get(req: ApiRequest) -> ApiResponse:
        return ApiResponse.json(await api.get(req.params["component"], req.params["target"]))

    async def terminate(req: ApiRequest) -> ApiResponse:
        p = req.params
        await api.terminate(p["component"], p["target"], not _flag(req, "non_recursive"))
        return ApiResponse.empty(ACCEPTED)

    async def raise_event(req: ApiRequest) -> ApiResponse:
        p = req.params
        await api.raise_event(p["component"], p["target"], p["event"], _text(req.body))
        return ApiResponse.empty(ACCEPTED)

    async def pause(req: ApiRequest) -> ApiResponse:
        await api.pause(req.params["component"], req.params["target"])
        return ApiResponse.empty(ACCEPTED)

    async def resume(req: ApiRequest) -> ApiResponse:
        await api.resume(req.params["component"], req.params["target"])
        return ApiResponse.empty(ACCEPTED)

    async def purge(req: ApiRequest) -> ApiResponse:
        p = req.params
        await api.purge(p["component"], p["target"], not _flag(req, "non_recursive"))
        return ApiResponse.empty(ACCEPTED)

    async def listing(req: ApiRequest) -> ApiResponse:
        size_raw = _query(req, "pageSize")
        if size_raw and not size_raw.isdigit():
            raise DaprError(
                "ERR_BAD_REQUEST", f"pageSize {size_raw!r} is not a number", http_status=400
            )
        where = parse_filter(req.query_values())
        page = await api.list_instances(
            req.params["component"], where, int(size_raw or 0), _query(req, "continuationToken")
        )
        return ApiResponse.json(page)

    async def history(req: ApiRequest) -> ApiResponse:
        events = await api.history(req.params["component"], req.params["target"])
        return ApiResponse.json({"events": events})

    async def purge_where(req: ApiRequest) -> ApiResponse:
        where = parse_filter(req.query_values())
        return ApiResponse.json(await api.purge_where(req.params["component"], where))

    async def terminate_where(req: ApiRequest) -> ApiResponse:
        where = parse_filter(req.query_values())
        return ApiResponse.json(await api.terminate_where(req.params["component"], where))

    for prefix in PREFIXES:
        base = f"{prefix}/workflows/{{component}}"
        router.add("POST", f"{base}/{{target}}/start", start)
        router.add("GET", f"{base}/{{target}}", get)
        router.add("POST", f"{base}/{{target}}/terminate", terminate)
        router.add("POST", f"{base}/{{target}}/raiseEvent/{{event}}", raise_event)
        router.add("POST", f"{base}/{{target}}/pause", pause)
        router.add("POST", f"{base}/{{target}}/resume", resume)
        router.add("POST", f"{base}/{{target}}/purge", purge)
    # Beyond Dapr: filters on status, name and creation time, with paging; batch operations.
    base = "/v1.0/workflows/{component}"
    router.add("GET", base, listing)
    router.add("GET", f"{base}/{{target}}/history", history)
    router.add("POST", f"{base}/purge", purge_where)
    router.add("POST", f"{base}/terminate", terminate_where)
