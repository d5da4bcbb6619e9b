"""mmap: mmap/munmap/brk calls per process, with kernel-side filters on length and PID."""

from __future__ import annotations

from collections import Counter
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...errors import Unavailable
from .base import MissingEvent, Recipe, RecipeResult


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


# ---- catching the calls behind a growing mapping (ksight leak --trace) ---------------------------

GUARD_SLACK = 64 * 1024  # a mapping's length may exceed its VMA by guard pages split off its end


@dataclass(frozen=True)
class Caller:
    """The calls one thread made of the traced size (mmap) or to move its heap (brk)."""
    pid: int                      # the process (thread group id)
    tid: int                      # the thread the kernel recorded (common_pid)
    comm: str
    call: str                     # mmap or brk
    calls: int
    lengths: tuple[int, ...] = ()  # mmap: the distinct lengths asked for, most frequent first
    brk_grew_bytes: int | None = None  # brk: last break address - first one seen
    target: bool = False          # the growing process the watch named


@dataclass(frozen=True)
class CatchResult:
    targets: tuple[dict, ...]     # what was looked for: pid, call, size_bytes
    seconds: float
    backend: str
    events: int
    lost: int
    enabled: tuple[str, ...]
    filters: dict
    callers: tuple[Caller, ...]
    stacks: tuple[StackCount, ...] = ()
    stacks_why: str | None = None  # why there are no user stacks, when there are none
    missing: tuple = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class Catch(Recipe):
    """mmap calls of the recurring sizes of growing anonymous mappings, and brk calls of the
    processes whose [heap] grows: who makes them (pid, tid). Tracefs filters the mmap sizes in
    the kernel; brk takes an address, not a length, so it cannot be filtered by size: it is
    traced for every process (brk is rare) and kept for the target processes only."""

    name = "mmap-catch"
    question = "the mmap/brk calls behind a growing mapping"
    overhead = Mmap.overhead
    MAX_KEYS = 10_000

    def __init__(self, root, targets, **opts):
        super().__init__(root, **opts)
        self.targets = tuple(targets)
        self.sizes = sorted({t["size_bytes"] for t in self.targets
                             if t.get("call") == "mmap" and t.get("size_bytes")})
        # mappings that grow by merging: calls up to the step, of these processes only
        self.upto = {t["pid"]: t["max_bytes"] for t in self.targets
                     if t.get("call") == "mmap" and not t.get("size_bytes") and t.get("max_bytes")}
        self.heap_pids = sorted({t["pid"] for t in self.targets if t.get("call") == "brk"})
        self.target_pids = {t["pid"] for t in self.targets}
        evs = []
        if self.sizes or self.upto:
            evs.append("syscalls:sys_enter_mmap")
        if self.heap_pids:
            evs.append("syscalls:sys_enter_brk")
        self.events = tuple(evs)
        self.mm: dict = {}       # (tgid, tid) -> Counter of lengths
        self.brk: dict = {}      # (tgid, tid) -> [calls, first address, last address]
        self._tgid: dict[int, int | None] = {}

    def ranges(self) -> list[tuple[int, int]]:
        out = [(s, s + GUARD_SLACK) for s in self.sizes]
        if self.upto:
            out.append((4096, max(self.upto.values()) + GUARD_SLACK))
        return out

    def filters(self):
        out = {}
        if self.ranges():
            out["syscalls:sys_enter_mmap"] = " || ".join(
                f"(len >= {a} && len <= {b})" for a, b in self.ranges())
        return out

    def wanted(self, tgid, length: int) -> bool:
        """An mmap event is kept when its length is one of the recurring sizes, or when it
        comes from a process whose mapping grows by steps (of at most the step)."""
        if any(s <= length <= s + GUARD_SLACK for s in self.sizes):
            return True
        up = self.upto.get(tgid)
        return up is not None and length <= up + GUARD_SLACK

    def headline(self, seconds):
        what = []
        if self.sizes:
            what.append("mmap calls of " + ", ".join(f"{s:,}" for s in self.sizes) + " bytes")
        if self.upto:
            what.append("mmap calls of PID " + ", ".join(map(str, self.upto)))
        if self.heap_pids:
            what.append("brk calls of PID " + ", ".join(map(str, self.heap_pids)))
        return f"Tracing {' and '.join(what)} for {seconds:g} s... Hit Ctrl-C to end."

    def tgid(self, tid: int) -> int | None:
        """The process a thread belongs to: Tgid in /proc/TID/status (a thread's own status is
        there even though /proc lists only processes); None once it exited."""
        if tid in self._tgid:
            return self._tgid[tid]
        got = None
        try:
            for line in self.root.read_text(f"proc/{tid}/status").splitlines():
                if line.startswith("Tgid:"):
                    got = int(line.split()[1])
                    break
        except (Unavailable, ValueError, IndexError):
            got = None
        if len(self._tgid) < self.MAX_KEYS:
            self._tgid[tid] = got
        return got

    def on_event(self, e):
        tid = e.pid
        tgid = self.tgid(tid)
        key = (tgid if tgid is not None else -1, tid)
        if e.name.endswith("sys_enter_brk"):
            if tgid not in self.heap_pids:
                return
            addr = int(e.fields.get("brk", 0) or 0)
            got = self.brk.get(key)
            if got is None:
                if len(self.brk) < self.MAX_KEYS:
                    self.brk[key] = [1, addr, addr]
            else:
                got[0] += 1
                if addr:  # brk(0) asks for the current break: not a move
                    got[1] = got[1] or addr
                    got[2] = addr
            return
        length = int(e.fields.get("len", 0) or 0)
        if not self.wanted(tgid, length):
            return
        c = self.mm.get(key)
        if c is None:
            if len(self.mm) >= self.MAX_KEYS:
                return
            c = self.mm[key] = Counter()
        c[length] += 1

    def body(self):
        out = []
        for (pid, tid), c in self.mm.items():
            out.append(Caller(pid, tid, self.procs.comm(tid), "mmap", sum(c.values()),
                              tuple(n for n, _ in c.most_common(8)), None, pid in self.target_pids))
        for (pid, tid), (n, a, b) in self.brk.items():
            out.append(Caller(pid, tid, self.procs.comm(tid), "brk", n, (), (b - a) if a and b else None,
                              True))
        out.sort(key=lambda c: (not c.target, -c.calls))
        notes = []
        if self.upto:
            notes.append("a mapping that grows by steps is adjacent mmaps merged into one: the "
                         "calls of up to the step's length of that process are shown")
        if self.sizes:
            notes.append(f"mmap lengths from each size up to {GUARD_SLACK // 1024} KiB more: a "
                         "guard page split off a mapping's end leaves the rest its own mapping")
        if self.heap_pids:
            notes.append("brk takes an address, not a length: every process's brk is traced and "
                         "only the growing processes' calls kept; the growth is the last break "
                         "address minus the first one seen")
        return {"callers": tuple(out), "notes": notes}

    def result(self, t) -> CatchResult:
        body = self.body()
        return CatchResult(targets=self.targets, seconds=round(t.duration_s, 3),
                           backend="tracefs", events=t.count, lost=t.lost,
                           enabled=tuple(t.enabled), filters=dict(t.filters),
                           callers=body["callers"],
                           missing=tuple(MissingEvent(m.event, m.reason, m.alternative)
                                         for m in t.missing),
                           errors=tuple(t.errors), notes=tuple(body["notes"]))


def catch_live(targets, seconds: float, *, stacks: bool = True, say=None) -> CatchResult:
    """`catch` on this machine's kernel (tracing acts on the live kernel only: commands such as
    `ksight leak --trace` call this and never hold a Root themselves)."""
    from ...fs import LiveRoot

    return catch(LiveRoot(), targets, seconds, stacks=stacks, say=say)


def catch(root, targets, seconds: float, *, stacks: bool = True, say=None) -> CatchResult:
    """Trace the calls behind the growing mappings for `seconds` (Ctrl-C or SIGTERM end it
    early; the trace still reports). User stacks come from perf (`perf record -e
    syscalls:sys_enter_mmap --filter ... -p PID,PID --call-graph fp`) for the processes whose
    mmap calls are looked for (else those whose brk calls are), when perf runs here; otherwise
    `stacks_why` says why. Tracing is off and the tracefs instance
    gone when this returns, whatever happened (the session's and perf.Record's own clean-up)."""
    import dataclasses

    from ..session import interruptible

    rec_obj = Catch(root, targets)
    if not rec_obj.events:
        return CatchResult(targets=tuple(targets), seconds=0.0, backend="tracefs", events=0,
                           lost=0, enabled=(), filters={}, callers=(),
                           stacks_why="nothing to trace: no recurring mapping size and no heap growth",
                           notes=("nothing to trace: no growing process made anonymous mappings "
                                  "of a recurring size or grew its heap",))
    stack_rec = None
    why = None
    with interruptible() as run:
        if stacks:
            # perf for every process of one kind of call (a tracepoint filter cannot hold both
            # mmap's length and brk's address): the mmap targets, else the brk ones
            mm = [t["pid"] for t in targets if t["call"] == "mmap"]
            who = ",".join(str(p) for p in dict.fromkeys(mm or [t["pid"] for t in targets]))
            try:
                from ..perf import Record

                if mm:
                    stack_rec = run.enter(Record(seconds=seconds, events=["syscalls:sys_enter_mmap"],
                                                 filter=rec_obj.filters()["syscalls:sys_enter_mmap"],
                                                 pid=who))
                else:
                    stack_rec = run.enter(Record(seconds=seconds, events=["syscalls:sys_enter_brk"],
                                                 pid=who))
            except Unavailable as exc:
                stack_rec, why = None, f"no user stacks: {exc.reason}"
        if say:
            say(rec_obj.headline(seconds))
        t = run.trace(rec_obj.session(seconds))
    res = rec_obj.result(t)
    if stack_rec is not None:
        got = stacks_of(stack_rec.samples)
        if not got:
            why = ("perf recorded no call of the target in the trace"
                   + (f" ({stack_rec.stderr.strip()[:200]})" if stack_rec.stderr.strip() else ""))
        elif max(sum(1 for f in s.stack.split(" <- ") if f and f != "[unknown]")
                 for s in got) <= 1:
            why = ("perf walked no further than the innermost frame: the program (or its "
                   "libc, or an interpreter) runs without frame pointers; rebuild with "
                   "-fno-omit-frame-pointer, or record with DWARF unwinding "
                   "(perf record --call-graph dwarf)")
        res = dataclasses.replace(res, stacks=got, stacks_why=why)
    else:
        res = dataclasses.replace(res, stacks_why=why or "no user stacks: not asked for")
    return res
