"""/proc/loadavg: load averages (runnable + uninterruptible tasks), runnable/total tasks, last pid."""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import require_complete, to_float, to_int

PATH = "proc/loadavg"


@dataclass(frozen=True)
class Loadavg:
    load1: float
    load5: float
    load15: float
    runnable: int | None  # tasks currently runnable (the kernel counts threads)
    tasks: int | None  # all tasks (threads) on the system
    last_pid: int | None


def parse(text: str, path: str = PATH) -> Loadavg:
    # "%lu.%02lu %lu.%02lu %lu.%02lu %u/%d %d\n": the averages are to_float's shape; the
    # task count and last pid are %d but can't be negative (a '-' is refused)
    require_complete(text, path)
    line = text.splitlines()[0] if text.strip() else ""
    toks = line.split()
    if len(toks) < 3:
        raise ParseError(path, 1, line, "expected at least three load averages")
    l1, l5, l15 = (to_float(t, path, 1, line) for t in toks[:3])
    runnable = tasks = last = None
    if len(toks) >= 4:
        r, sep, t = toks[3].partition("/")
        if not sep:
            raise ParseError(path, 1, line, "expected 'runnable/total'")
        runnable, tasks = to_int(r, path, 1, line), to_int(t, path, 1, line)
    if len(toks) >= 5:
        last = to_int(toks[4], path, 1, line)
    return Loadavg(l1, l5, l15, runnable, tasks, last)


def read(root: Root) -> Loadavg:
    return parse(root.read_text(PATH))
