"""/proc/uptime: seconds since boot and summed idle seconds of all CPUs.

The uptime is the clock captures use to time the gap between snapshots when no manifest says."""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import require_complete, to_float

PATH = "proc/uptime"


@dataclass(frozen=True)
class Uptime:
    uptime_s: float
    idle_s: float | None  # summed over CPUs, so it can exceed uptime_s


def parse(text: str, path: str = PATH) -> Uptime:
    # "%lu.%02lu %lu.%02lu\n": to_float refuses signs, exponents, inf and nan
    require_complete(text, path)
    lines = text.splitlines()
    toks = lines[0].split() if lines else []
    if not toks or len(toks) > 2:
        raise ParseError(path, 1, lines[0] if lines else "", "expected 'uptime idle'")
    up = to_float(toks[0], path, 1, lines[0])
    idle = to_float(toks[1], path, 1, lines[0]) if len(toks) == 2 else None
    return Uptime(up, idle)


def read(root: Root) -> Uptime:
    return parse(root.read_text(PATH))
