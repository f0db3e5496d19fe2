"""``tandem workflow list|history|purge|terminate|raise-event``: one app's workflow
instances, through its sidecar's runtime HTTP socket (owner-only, no API token needed).

``list``, ``purge`` and ``terminate`` take filters on status, name and creation time
(batch operations beyond Dapr); ``purge`` and ``terminate`` also take one instance id.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

BASE = "http://runtime/v1.0/workflows/dapr"


class CliError(Exception):
    pass


def _socket(apps: Sequence[Mapping[str, Any]], app_id: str) -> Path:
    chosen = [a for a in apps if not app_id or a.get("app_id") == app_id]
    if not chosen:
        raise CliError(f"no running sidecar{f' for app {app_id}' if app_id else ''}")
    ids = sorted({str(a.get("app_id")) for a in chosen})
    if len(ids) > 1:
        raise CliError(f"several apps are running ({', '.join(ids)}): pick one with --app-id")
    return Path(str(chosen[0].get("run_dir"))) / "runtime-http.sock"


def _filters(a: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if a.status:
        params["runtimeStatus"] = ",".join(s.upper() for s in a.status)
    if a.name:
        params["name"] = a.name
    if a.created_from:
        params["createdFrom"] = a.created_from
    if a.created_to:
        params["createdTo"] = a.created_to
    return params


def _call(sock: Path, method: str, path: str, **kw: Any) -> Any:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=30) as c:
        reply = c.request(method, f"{BASE}{path}", **kw)
    if reply.status_code >= 400:
        try:
            body = reply.json()
            raise CliError(f"{body.get('errorCode')}: {body.get('message')}")
        except ValueError:
            raise CliError(f"HTTP {reply.status_code}: {reply.text}") from None
    return reply.json() if reply.content else {}


def _table(cols: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    for line in [cols, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def run(a: Any, apps: Sequence[Mapping[str, Any]]) -> int:
    try:
        sock = _socket(apps, a.app_id)
        return _run(a, sock)
    except CliError as exc:
        print(f"tandem workflow {a.workflow_cmd}: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(
            f"tandem workflow {a.workflow_cmd}: the sidecar did not answer: {exc}", file=sys.stderr
        )
        return 1


def _run(a: Any, sock: Path) -> int:
    cmd = a.workflow_cmd
    out: Any
    if cmd == "list":
        params = _filters(a)
        instances: list[dict[str, Any]] = []
        token = ""
        while True:  # every page
            page = _call(
                sock, "GET", "", params={**params, "pageSize": 500, "continuationToken": token}
            )
            instances += page["instances"]
            token = page.get("continuationToken", "")
            if not token:
                break
        out = instances
        if a.output != "json":
            if not instances:
                print("No workflow instances.")
            else:
                _table(
                    ["INSTANCE ID", "NAME", "STATUS", "CREATED"],
                    [
                        [i["instanceID"], i["workflowName"], i["runtimeStatus"], i["createdAt"]]
                        for i in instances
                    ],
                )
            return 0
    elif cmd == "history":
        out = _call(sock, "GET", f"/{a.instance}/history")["events"]
        if a.output != "json":
            rows = []
            for e in out:
                kind = next((k for k in e if k not in ("eventId", "timestamp", "router")), "?")
                rows.append([str(e.get("eventId", -1)), e.get("timestamp", ""), kind])
            _table(["EVENT ID", "TIME", "EVENT"], rows or [["", "", ""]])
            return 0
    elif cmd in ("purge", "terminate"):
        if a.instance:
            _call(sock, "POST", f"/{a.instance}/{cmd}")
            out = {"purged" if cmd == "purge" else "terminated": [a.instance], "count": 1}
        else:
            params = _filters(a)
            if not params:
                raise CliError("give an instance id or at least one filter (--status, --name, ...)")
            out = _call(sock, "POST", f"/{cmd}", params=params)
    elif cmd == "raise-event":
        data = a.data.encode() if a.data is not None else b""
        _call(sock, "POST", f"/{a.instance}/raiseEvent/{a.event}", content=data)
        out = {"instanceID": a.instance, "event": a.event}
    else:  # pragma: no cover - argparse refuses other commands
        raise CliError(f"unknown command {cmd}")
    if a.output == "json":
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
    return 0


def add_arguments(sub: Any) -> None:
    wf = sub.add_parser("workflow", help="workflow instances of an app: list, history, batch ops")
    wf_sub = wf.add_subparsers(dest="workflow_cmd", required=True)

    def common(p: Any) -> None:
        p.add_argument("--app-id", "-a", default="", help="the app (needed if several run)")
        p.add_argument("--output", "-o", default="table", choices=["table", "json"])

    def filters(p: Any) -> None:
        p.add_argument("--status", action="append", default=[], help="RUNNING, COMPLETED, ...")
        p.add_argument("--name", default="", help="only workflows of this name")
        p.add_argument("--created-from", default="", help="RFC 3339: created at or after")
        p.add_argument("--created-to", default="", help="RFC 3339: created before")

    ls = wf_sub.add_parser("list", help="list instances (filters: status, name, creation time)")
    common(ls)
    filters(ls)
    hi = wf_sub.add_parser("history", help="an instance's committed history")
    common(hi)
    hi.add_argument("instance")
    for verb in ("purge", "terminate"):
        p = wf_sub.add_parser(verb, help=f"{verb} one instance, or every instance a filter selects")
        common(p)
        p.add_argument("instance", nargs="?", default="")
        filters(p)
    re = wf_sub.add_parser("raise-event", help="raise an external event on an instance")
    common(re)
    re.add_argument("instance")
    re.add_argument("event")
    re.add_argument("--data", default=None, help="the event's payload (JSON text)")
