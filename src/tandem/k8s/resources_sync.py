"""``python -m tandem.k8s.resources_sync``: the ``tandem-resources`` sidecar of a pod.

Keeps ``--out`` (the runtime's ``--resources-path``) equal to the pod's namespace's
``dapr.io`` objects, streamed by the control plane (:mod:`tandem.k8s.resource_service`):
each set is written file by file atomically, files no longer in the set are removed, and
the runtime's own hot reload takes it from there. ``.synced`` appears after the first set
(the container's startup probe waits for it, so the runtime starts with its components).
It proves who it is with the enrolment the init container wrote (``enrolment.json``).
Reconnects with back-off, forever: to whichever control-plane replica the Service picks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from tandem.k8s.resource_service import METHOD, SERVICE
from tandem.placement import wire
from tandem.xds.ca import DEFAULT_TRUST_DOMAIN, write_private_file

log = logging.getLogger("tandem.k8s.resources_sync")
SYNCED = ".synced"


def apply_files(out: Path, files: Sequence[Sequence[str]]) -> bool:
    """Make ``out`` hold exactly ``files`` ([name, text]); True if anything changed."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for name, text in files:
        if "/" in name or name.startswith("."):
            raise ValueError(f"unsafe file name {name!r}")
        wanted[name] = text
    changed = False
    for name, text in wanted.items():
        path = out / name
        if not path.is_file() or path.read_text() != text:
            # Owner-only: Components may carry credentials.
            write_private_file(path, text.encode())
            changed = True
    for path in out.glob("*.yaml"):
        if path.name not in wanted:
            path.unlink()
            changed = True
    return changed


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tandem.k8s.resources_sync", description=__doc__)
    p.add_argument("--control-plane", required=True, help="HOST:PORT of the control plane")
    p.add_argument("--run-dir", required=True, type=Path, help="where enrolment.json is")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--app-id", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--node-id", required=True)
    p.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="tandem resources: %(message)s")
    fragment = json.loads((a.run_dir / "enrolment.json").read_text())
    metadata = fragment["node"]["metadata"]
    request = {
        "node_id": a.node_id,
        "app_id": a.app_id,
        "namespace": a.namespace,
        "trust_domain": a.trust_domain,
        "csr": metadata["csr"],
        "credential": metadata["credential"],
    }
    delay = 0.5
    while True:
        try:
            with grpc.insecure_channel(a.control_plane) as channel:
                watch = channel.unary_stream(
                    f"/{SERVICE}/{METHOD}",
                    request_serializer=wire.encode,
                    response_deserializer=wire.decode,
                )
                for message in watch(request):
                    if apply_files(a.out, message["files"]):
                        log.info("%d resource files", len(message["files"]))
                    (a.out / SYNCED).touch()
                    delay = 0.5
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                log.error("refused: %s", exc.details())
                return 1
            log.info("stream ended (%s), reconnecting", exc.code().name)
        except (OSError, ValueError, KeyError) as exc:
            log.error("cannot apply the resources: %s", exc)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


if __name__ == "__main__":
    sys.exit(main())
