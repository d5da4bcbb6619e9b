"""writeback: processes throttled by balance_dirty_pages, and their pause time."""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .base import Recipe, RecipeResult


@dataclass(frozen=True)
class Throttled:
    pid: int
    comm: str
    events: int
    paused: int                   # events with a pause > 0
    pause_ms: int                 # total pause (the tracepoint gives ms)
    max_pause_ms: int
    bdi: tuple[str, ...]          # backing devices written to


@dataclass(frozen=True, kw_only=True)
class WritebackResult(RecipeResult):
    processes: tuple[Throttled, ...]


class Writeback(Recipe):
    name = "writeback"
    question = "dirty-page throttling (balance_dirty_pages)"
    events = ("writeback:balance_dirty_pages",)
    overhead = "low: one event per throttling decision of a writer that dirties pages fast"
    Result = WritebackResult

    def __init__(self, root, **opts):
        super().__init__(root, **opts)
        self.by_proc: dict = {}

    def on_event(self, e):
        comm = self.procs.comm(e.pid)
        acc = self.by_proc.setdefault((e.pid, comm), [0, 0, 0, 0, set()])
        acc[0] += 1
        p = e.get("pause", 0)  # ms (the kernel converts jiffies to ms in the tracepoint)
        if p > 0:
            acc[1] += 1
            acc[2] += p
            acc[3] = max(acc[3], p)
        acc[4].add(e.get("bdi", "?"))

    def body(self):
        procs = [Throttled(pid, comm, a[0], a[1], a[2], a[3], tuple(sorted(a[4])))
                 for (pid, comm), a in self.by_proc.items()]
        procs.sort(key=lambda r: (-r.pause_ms, -r.events))
        return {"processes": tuple(procs)}
