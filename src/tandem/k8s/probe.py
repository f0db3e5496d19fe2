"""``python -m tandem.k8s.probe PORT PATH``: the sidecar's probe, run inside its container.

Envoy serves the Dapr API on the pod's loopback only (as daprd does by default), which the
kubelet's own HTTP probes cannot reach; an exec probe asks from inside the pod.
"""

from __future__ import annotations

import asyncio
import sys

from tandem.cli.probe import http_status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[0].isdigit():
        print("usage: python -m tandem.k8s.probe PORT PATH", file=sys.stderr)
        return 2
    status = asyncio.run(http_status("127.0.0.1", int(args[0]), args[1], timeout=2.0))
    return 0 if status is not None and 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
