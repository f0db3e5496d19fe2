"""The owner's ``/metrics`` with its workers' series folded in (``--runtime-workers N``).

Each runtime process counts only its own calls. The owner (worker 0) reads each worker's
Dapr metrics from its socket (``metrics-{i}.sock``) at every scrape and serves every
family once, each series labelled ``worker="i"`` (its own ``worker="0"``), so a sum over
``worker`` is the sidecar's total. ``tandem_runtime_worker_up`` says which workers
answered: a worker being restarted shows as 0 rather than its series silently missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import aiohttp

log = logging.getLogger("tandem.metrics")

WORKER_LABEL = "worker"
UP_FAMILY = "tandem_runtime_worker_up"
FETCH_TIMEOUT_SECONDS = 2.0


def _labelled(sample: bytes, worker: str) -> bytes:
    """``name{a="b"} 1`` → ``name{worker="i",a="b"} 1`` (names hold neither ``{`` nor a space)."""
    label = f'{WORKER_LABEL}="{worker}"'.encode()
    brace = sample.find(b"{")
    space = sample.find(b" ")
    if brace != -1 and (space == -1 or brace < space):
        inner = b"," if sample[brace + 1 : brace + 2] != b"}" else b""
        return sample[: brace + 1] + label + inner + sample[brace + 1 :]
    return sample[:space] + b"{" + label + b"}" + sample[space:]


def fold(texts: Sequence[tuple[str, bytes]]) -> bytes:
    """Prometheus text of several processes, ``(worker, text)``, as one exposition (pure):
    each family's HELP and TYPE once (the first seen), then its samples from every process
    in order, each labelled with its worker. Families without samples are left out."""
    headers: dict[bytes, dict[bytes, bytes]] = {}
    samples: dict[bytes, list[bytes]] = {}
    for worker, text in texts:
        family = b""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith(b"#"):
                parts = line.split(b" ", 3)
                if len(parts) >= 3 and parts[1] in (b"HELP", b"TYPE"):
                    family = parts[2]
                    headers.setdefault(family, {}).setdefault(parts[1], line)
                continue
            samples.setdefault(family, []).append(_labelled(line, worker))
    out = []
    for family, header in headers.items():
        if samples.get(family):
            out += [*header.values(), *samples[family]]
    return b"\n".join(out) + b"\n" if out else b""


def up_family(up: Sequence[tuple[str, bool]]) -> bytes:
    lines = [
        f"# HELP {UP_FAMILY} Whether the owner could read this runtime worker's metrics",
        f"# TYPE {UP_FAMILY} gauge",
        *(f'{UP_FAMILY}{{{WORKER_LABEL}="{w}"}} {1 if ok else 0}' for w, ok in up),
    ]
    return ("\n".join(lines) + "\n").encode()


async def _fetch(socket: Path) -> bytes | None:
    try:
        connector = aiohttp.UnixConnector(path=str(socket))
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get("http://worker/metrics") as resp,
        ):
            return await resp.read() if resp.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("cannot read runtime worker metrics at %s: %s", socket, exc)
        return None


async def folded(own: bytes, workers: Sequence[Path]) -> bytes:
    """The owner's Dapr metrics ``own`` with each worker's (sockets in worker order, 1..)."""
    answers = await asyncio.gather(*(_fetch(s) for s in workers))
    texts = [("0", own)]
    up = []
    for index, answer in enumerate(answers, start=1):
        up.append((str(index), answer is not None))
        if answer is not None:
            texts.append((str(index), answer))
    return fold(texts) + up_family(up)
