"""mmap: mmap/munmap/brk calls per process, with kernel-side filters on length and PID."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .base import Recipe, RecipeResult


@dataclass(frozen=True)
class MapCalls:
    pid: int
    comm: str
    mmap: int
    munmap: int
    brk: int


@dataclass(frozen=True)
class StackCount:
    """A user-space stack of the filtered mmaps (perf, --stacks)."""
    pid: int
    comm: str
    stack: str                    # innermost first, ' <- ' between frames
    count: int


@dataclass(frozen=True, kw_only=True)
class MmapResult(RecipeResult):
    size: int | None
    pid: int | None
    processes: tuple[MapCalls, ...]
    stacks: tuple[StackCount, ...] = ()


class Mmap(Recipe):
    name = "mmap"
    question = "mmap/munmap/brk calls"
    events = ("syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap", "syscalls:sys_enter_brk")
    overhead = ("low with --size: the kernel-side filter drops other sizes before they reach the "
                "buffer (the syscall tracepoint itself still costs ~0.1 us per mmap/munmap/brk)")
    Result = MmapResult

    def __init__(self, root, size: int | None = None, pid: int | None = None, **opts):
        super().__init__(root, **opts)
        self.size, self.pid = size, pid
        self.c: Counter = Counter()
        if size and not pid:
            # brk takes an address, not a length: with --size alone it would list every
            # process that grows its heap, so it is left out
            self.events = ("syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap")

    def headline(self, seconds):
        what = f"mmap/munmap of {self.size} bytes" if self.size else "mmap/munmap/brk calls"
        who = f" by PID {self.pid}" if self.pid else ""
        dur = f"for {seconds:g} s" if seconds else "until Ctrl-C"
        return f"Tracing {what}{who} {dur}... Hit Ctrl-C to end."

    def filters(self):
        pidf = f"common_pid == {int(self.pid)}" if self.pid else None
        out = {}
        for ev in ("syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap"):
            parts = [p for p in (f"len == {int(self.size)}" if self.size else None, pidf) if p]
            if parts:
                out[ev] = " && ".join(parts)
        if pidf:
            out["syscalls:sys_enter_brk"] = pidf
        return out

    def on_event(self, e):
        call = e.name.rsplit("sys_enter_", 1)[-1]
        self.c[(e.pid, self.procs.comm(e.pid), call)] += 1

    def body(self):
        per: dict = {}
        for (pid, comm, call), n in self.c.items():
            per.setdefault((pid, comm), Counter())[call] += n
        procs = [MapCalls(k[0], k[1], v.get("mmap", 0), v.get("munmap", 0), v.get("brk", 0))
                 for k, v in per.items()]
        procs.sort(key=lambda r: -(r.mmap + r.munmap + r.brk))
        notes = []
        if self.size and not self.pid:
            notes.append("brk not traced with --size (it takes an address, not a length); add -p PID for it")
        elif self.size:
            notes.append("brk is not filtered by size (it takes an address, not a length)")
        if self.pid:
            notes.append("-p filters on the thread ID the kernel records (common_pid): other "
                         "threads of a multi-threaded process are not seen; use --stacks -p for those")
        return {"size": self.size, "pid": self.pid, "processes": tuple(procs), "notes": notes}


def stacks_of(samples, limit: int = 20) -> tuple[StackCount, ...]:
    """perf samples of the filtered mmaps -> the most frequent user stacks (8 frames)."""
    st: Counter = Counter()
    for s in samples:
        st[(s.pid, s.comm, " <- ".join(s.frames()[:8]))] += 1
    return tuple(StackCount(k[0], k[1], k[2], n) for k, n in st.most_common(limit))
