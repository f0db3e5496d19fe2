"""``tandem jobs list [--app-id A]``: every job the control plane's scheduler keeps, with
its next fire time (Tandem's own; Dapr has no listing)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc

from tandem.placement import wire
from tandem.xds.record import ads_socket_path


async def _jobs(home: Path, app_id: str) -> list[dict[str, Any]] | None:
    sock = ads_socket_path(home)
    if not sock.exists():
        return None
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        try:
            answer = await wire.unary(channel, wire.JOBS, "List")({"appId": app_id}, timeout=5)
        except grpc.aio.AioRpcError:
            return None
    jobs: list[dict[str, Any]] = answer.get("jobs", [])
    return jobs


def cmd_jobs_list(home: Path, app_id: str, output: str) -> int:
    jobs = asyncio.run(_jobs(home, app_id))
    if jobs is None:
        print("The control plane is not running (start a sidecar with `tandem run`).")
        return 1
    rows = [{k: v for k, v in j.items() if k != "data"} for j in jobs]
    if output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No jobs" + (f" for app {app_id}" if app_id else "") + ".")
        return 0
    cols = ["APP ID", "NAME", "SCHEDULE", "DUE TIME", "REPEATS", "NEXT FIRE TIME"]
    table = [
        [
            str(r.get("appId", "")),
            str(r.get("name", "")),
            str(r.get("schedule") or "-"),
            str(r.get("dueTime") or "-"),
            str(r.get("repeats") or "-"),
            str(r.get("nextFireTime", "")),
        ]
        for r in rows
    ]
    widths = [max(len(c), *(len(v[i]) for v in table)) for i, c in enumerate(cols)]
    for line in [cols, *table]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0
