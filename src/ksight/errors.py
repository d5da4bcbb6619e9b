"""The error types ksight raises on purpose.

Two kinds of trouble, kept apart because callers treat them differently:
- Unavailable: the data is not there (missing file, permission denied, a PID that exited,
  an old kernel without the file). The collector records it on the snapshot with its reason
  and carries on; views show the user what is missing.
- ParseError: the data is there but a line we know how to read is malformed. It names the
  path, line number and line, so a bug report carries everything needed to reproduce it.
"""

from __future__ import annotations

# How much of a piece of input text a message may quote. Input comes from captures made
# elsewhere: a 1 MB "number" in meminfo must give a short line in `show`, `check -v` and --json,
# not a 1 MB one. Every message is built here, so the caps are applied here, once.
QUOTE_CHARS = 200  # of the offending text (a line, a value, a reason read from a manifest)
MESSAGE_CHARS = 1000  # of a whole message (path + reason + quote), a last guard


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` if it is short, else its first `limit` characters and how long it was:
    'abc... (1048576 bytes)'. Safe on any string."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text.encode('utf-8', 'replace'))} bytes)"


class KsightError(Exception):
    """Base of every error ksight raises on purpose (the CLI prints these without a traceback).
    A message is capped at MESSAGE_CHARS, whatever went into it."""

    def __init__(self, *args):
        super().__init__(*(clip(a, MESSAGE_CHARS) if isinstance(a, str) else a for a in args))


class Unavailable(KsightError):
    """A source could not be read. `reason` is short and meant for people."""

    def __init__(self, source: str, reason: str):
        source, reason = clip(str(source)), clip(str(reason), MESSAGE_CHARS // 2)
        super().__init__(f"{source}: unavailable: {reason}")
        self.source = source
        self.reason = reason


class ParseError(KsightError):
    """A known line of a kernel file is malformed."""

    def __init__(self, path: str, lineno: int | None, line: str | None, message: str):
        where = clip(str(path)) if lineno is None else f"{clip(str(path))}:{lineno}"
        shown = "" if line is None else f": {clip(line)!r}"
        super().__init__(f"{where}: {clip(str(message), MESSAGE_CHARS // 2)}{shown}")
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
