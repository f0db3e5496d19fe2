"""List-then-watch of one kind of API object, kept as a local copy.

:class:`Reflector` is the pure part: a re-list replaces the copy (objects missing from the
list are deletions that happened while no watch was open), watch events add, change and
remove objects, and the last resourceVersion seen is where the next watch starts.
:func:`list_watch` is the I/O edge (lightkube): list, watch from the list's version, re-watch
from the last version when the API server ends a watch (its timeout), and re-list when the
version is too old (``410 Gone``) or the connection fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tandem.k8s.reflector")

Object = dict[str, Any]
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def key_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name')}"


@dataclass(slots=True)
class Reflector:
    kind: str
    objects: dict[str, Object] = field(default_factory=dict)
    resource_version: str | None = None
    # Moves at every change of ``objects``: consumers compare it to skip idle rounds.
    generation: int = 0

    def relist(self, items: Iterable[Object], resource_version: str) -> bool:
        """Replace the copy with a full list; True if anything changed."""
        fresh = {key_of(o): o for o in items}
        changed = fresh != self.objects
        self.objects = fresh
        self.resource_version = resource_version
        if changed:
            self.generation += 1
        return changed

    def apply(self, event_type: str, obj: Object) -> bool:
        """One watch event; True if the copy changed. Raises Gone on 410."""
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise Gone(str(obj.get("message") or "resource version too old"))
            raise RuntimeError(f"watch error: {obj.get('message') or obj}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)
        if event_type == "BOOKMARK":
            return False
        key = key_of(obj)
        if event_type == "DELETED":
            if self.objects.pop(key, None) is None:
                return False
        elif event_type in ("ADDED", "MODIFIED"):
            if self.objects.get(key) == obj:
                return False
            self.objects[key] = obj
        else:
            log.warning("unknown watch event ignored", extra={"type": event_type})
            return False
        self.generation += 1
        return True


async def list_watch(
    client: Any,
    resource: type,
    reflector: Reflector,
    on_change: Callable[[], None],
    *,
    namespace: str = "*",
    labels: Mapping[str, Any] | None = None,
) -> None:
    """Keep ``reflector`` in step with the API server until cancelled."""
    from lightkube import ApiError

    delay = RETRY_SECONDS
    missing_logged = False
    while True:
        try:
            listing = client.list(resource, namespace=namespace, labels=labels)
            items = [o.to_dict() async for o in listing]
            if reflector.relist(items, listing.resourceVersion):
                on_change()
            log.debug("listed", extra={"kind": reflector.kind, "rv": reflector.resource_version})
            delay = RETRY_SECONDS
            # lightkube re-watches by itself from the last version when a watch ends.
            async for event_type, obj in client.watch(
                resource,
                namespace=namespace,
                labels=labels,
                resource_version=reflector.resource_version,
            ):
                if reflector.apply(event_type, obj.to_dict()):
                    on_change()
        except asyncio.CancelledError:
            raise
        except Gone as exc:
            log.info(
                "watch expired, listing again", extra={"kind": reflector.kind, "why": str(exc)}
            )
        except ApiError as exc:
            if exc.status.code == 410:
                log.info("watch expired, listing again", extra={"kind": reflector.kind})
                continue
            if exc.status.code == 404:
                # Its CRD is not installed (the traffic kinds are optional): look now and then.
                if not missing_logged:
                    missing_logged = True
                    log.info("kind not served by this cluster", extra={"kind": reflector.kind})
                await asyncio.sleep(MAX_RETRY_SECONDS)
                continue
            log.warning(
                "watch failed",
                extra={"kind": reflector.kind, "code": exc.status.code, "error": str(exc)[:300]},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
        except Exception as exc:
            log.warning(
                "watch failed",
                extra={"kind": reflector.kind, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
