"""The CEL engine: the compiled core of the ``common-expression-language`` package, loaded
without the package's ``__init__``, which also imports its command-line interface (typer,
rich, httpx…: ~20 MB resident in every process that only compiles and evaluates
expressions). Falls back to ``import cel`` if the package is laid out differently.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def _load() -> ModuleType:
    spec = importlib.util.find_spec("cel")  # finds the package without running it
    if spec is not None and spec.origin is not None:
        for library in Path(spec.origin).parent.glob("cel.*.so"):
            core = importlib.util.spec_from_file_location("cel.cel", library)
            if core is not None and core.loader is not None:
                module = importlib.util.module_from_spec(core)
                core.loader.exec_module(module)
                return module
    import cel

    return cel


cel: ModuleType = _load()
