"""The error types ksight raises on purpose.

Two kinds of trouble, kept apart because callers treat them differently:
- Unavailable: the data is not there (missing file, permission denied, a PID that exited,
  an old kernel without the file). The collector records it on the snapshot with its reason
  and carries on; views show the user what is missing.
- ParseError: the data is there but a line we know how to read is malformed. It names the
  path, line number and line, so a bug report carries everything needed to reproduce it.
"""

from __future__ import annotations


class KsightError(Exception):
    """Base of every error ksight raises on purpose (the CLI prints these without a traceback)."""


class Unavailable(KsightError):
    """A source could not be read. `reason` is short and meant for people."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: unavailable: {reason}")
        self.source = source
        self.reason = reason


class ParseError(KsightError):
    """A known line of a kernel file is malformed."""

    def __init__(self, path: str, lineno: int | None, line: str | None, message: str):
        where = path if lineno is None else f"{path}:{lineno}"
        shown = "" if line is None else f": {line[:200]!r}"
        super().__init__(f"{where}: {message}{shown}")
        self.path = path
        self.lineno = lineno
        self.line = line
        self.message = message


class CaptureError(KsightError):
    """A capture (directory or archive) cannot be opened or is unsafe (a path escaping its root)."""


class UsageError(KsightError):
    """The user asked for something that cannot be done as asked."""


class SampleError(KsightError):
    """A stored sample (store/samples.py) cannot be decoded: truncated, corrupt, or too new."""
