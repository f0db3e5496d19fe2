"""``tandem actors list [--type T]``: where each live actor is, and its reminders.

Each running sidecar's runtime answers for its own live actors (over its HTTP socket in the
sidecar's run directory: no API token needed, the files are owner-only); the control
plane's scheduler answers for the reminders.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx

from tandem.ext_proc.actors_http import LISTING_PATH
from tandem.placement import wire
from tandem.xds.record import ads_socket_path


def _live(app: Mapping[str, Any]) -> dict[str, Any] | None:
    run_dir = app.get("run_dir")
    if not isinstance(run_dir, str):
        return None
    sock = Path(run_dir) / "runtime-http.sock"
    if not sock.exists():
        return None
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=5) as c:
            answer: dict[str, Any] = c.get(f"http://runtime{LISTING_PATH}").json()
            return answer
    except (httpx.HTTPError, ValueError):
        return None


async def _reminders(home: Path, actor_type: str) -> list[dict[str, Any]]:
    sock = ads_socket_path(home)
    if not sock.exists():
        return []
    async with grpc.aio.insecure_channel(f"unix:{sock}") as channel:
        try:
            answer = await wire.unary(channel, wire.REMINDERS, "List")(
                {"actorType": actor_type}, timeout=5
            )
        except grpc.aio.AioRpcError:
            return []
    reminders: list[dict[str, Any]] = answer.get("reminders", [])
    return reminders


def cmd_actors_list(
    home: Path, apps: Sequence[Mapping[str, Any]], actor_type: str, output: str
) -> int:
    rows: list[dict[str, Any]] = []
    for app in apps:
        live = _live(app)
        if live is None:
            continue
        for t, ids in sorted(live.get("actors", {}).items()):
            if actor_type and t != actor_type:
                continue
            for actor_id in ids:
                rows.append(
                    {"type": t, "id": actor_id, "appId": live["appId"], "host": live["host"]}
                )
    reminders = asyncio.run(_reminders(home, actor_type))
    by_actor: dict[tuple[str, str], list[str]] = {}
    for r in reminders:
        by_actor.setdefault((r["actorType"], r["actorID"]), []).append(r["name"])
    seen = {(r["type"], r["id"]) for r in rows}
    for t, actor_id in sorted(by_actor):
        if (t, actor_id) not in seen:  # a reminder on an actor not active anywhere now
            rows.append({"type": t, "id": actor_id, "appId": "", "host": ""})
    for row in rows:
        row["reminders"] = sorted(by_actor.get((row["type"], row["id"]), []))
    rows.sort(key=lambda r: (r["type"], r["id"]))
    if output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No live actors" + (f" of type {actor_type}" if actor_type else "") + ".")
        return 0
    cols = ["TYPE", "ID", "APP ID", "HOST", "REMINDERS"]
    table = [
        [
            r["type"],
            r["id"],
            r["appId"] or "-",
            r["host"] or "(not active)",
            ",".join(r["reminders"]),
        ]
        for r in rows
    ]
    widths = [max(len(c), *(len(v[i]) for v in table)) for i, c in enumerate(cols)]
    for line in [cols, *table]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0
