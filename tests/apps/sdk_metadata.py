"""Run under `tandem run`: the official Dapr SDK connects and reads the sidecar's metadata.

Exits 0 when `get_metadata()` reports the expected app id (argv[1]), 3 otherwise.
"""

from __future__ import annotations

import sys

from dapr.clients import DaprClient

with DaprClient() as client:
    md = client.get_metadata()
    print(f"app id from metadata: {md.application_id}", flush=True)
    sys.exit(0 if md.application_id == sys.argv[1] else 3)
