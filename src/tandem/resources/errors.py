"""The one error raised for any resource file that cannot be loaded."""

from __future__ import annotations

from pathlib import Path


class ResourceError(ValueError):
    """A resource file is unreadable or invalid.

    ``str()`` reads ``<file>:<line>: <field>: <reason>``: the file first so editors and
    terminals make it clickable, the field path (``spec.metadata[2].value``) so the user
    knows which key to fix without counting lines, then the reason. The line is left out
    when unknown and the field when the problem is the whole file (e.g. bad YAML syntax).
    """

    def __init__(self, file: str | Path, field: str, reason: str, line: int | None = None) -> None:
        self.file = str(file)
        self.field = field
        self.reason = reason
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.field:
            return f"{where}: {self.field}: {self.reason}"
        return f"{where}: {self.reason}"

    def __reduce__(self) -> tuple[type[ResourceError], tuple[str, str, str, int | None]]:
        # Keep the error picklable across process pools despite the custom __init__.
        return (type(self), (self.file, self.field, self.reason, self.line))
