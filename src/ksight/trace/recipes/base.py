"""What every recipe shares: the result's common part, the PID lookups, the bpftrace backend.

A recipe reads the kernel only through the Root it is given (`Recipe(root, ...)`) and the
parsers in ksight.sources; the tracefs session (trace/session.py, trace/tracefs.py) is the one
place that writes tracefs control files. Each recipe returns a frozen dataclass (a subclass of
`RecipeResult`); text for people is ksight.render.trace_text, JSON is ksight.render.jsonable.
"""

from __future__ import annotations

import time
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...errors import ParseError, Unavailable
from ...fs import Root
from ...sources.proc_pid import cgroup as pid_cgroup
from ..session import trace


# --- the result ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MissingEvent:
    event: str
    reason: str
    alternative: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecipeResult:
    """How the trace went; every recipe's result extends it with what it found."""
    recipe: str
    question: str
    backend: str                    # tracefs | bpftrace | perf
    seconds: float
    events: int
    lost: int                       # events the kernel dropped; -1 = some, count unknown
    truncated: bool                 # stopped at --max-events
    enabled: tuple[str, ...] = ()
    filters: dict[str, str] = field(default_factory=dict)
    missing: tuple[MissingEvent, ...] = ()
    overhead: str = ""
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    backend_why: str | None = None  # set by the CLI: why this backend ran


def log2_bucket(usec: float) -> int:
    """Upper bound of the power-of-two bucket holding usec (1, 2, 4, ... like bcc histograms)."""
    b = 1
    while b < usec:
        b <<= 1
    return b


# --- who is behind a PID -----------------------------------------------------------------------
class Procs:
    """PID -> (comm, memory cgroup path), read through the root once per PID and cached.

    Called from the reader thread as events arrive (every ~0.1 s), so a PID is usually looked
    up while it still exists; the comm of one that already exited comes from tracefs'
    saved_cmdlines, its cgroup from the kernel's own events when the recipe traces them
    (see `Lineage`), else it is None.
    """

    MAX = 100_000

    def __init__(self, root: Root):
        self.root = root
        self.cache: dict[int, tuple[str, str | None]] = {}
        self._saved: dict[int, str] = {}
        self._saved_at = 0.0

    def _from_tracefs(self, pid: int) -> str:
        """The comm tracefs saved for a PID that already exited (re-read at most every 0.5 s)."""
        if pid not in self._saved and time.monotonic() - self._saved_at > 0.5:
            from ..tracefs import saved_cmdlines

            self._saved = saved_cmdlines()
            self._saved_at = time.monotonic()
        return self._saved.get(pid, "?")

    def get(self, pid: int) -> tuple[str, str | None]:
        hit = self.cache.get(pid)
        if hit is not None:
            return hit
        if pid == 0:
            hit = ("[idle/irq]", None)
        else:
            try:
                comm = self.root.read_text(f"proc/{pid}/comm").strip()
            except Unavailable:
                comm = self._from_tracefs(pid)
            hit = (comm, memcg_of(self.root, pid))
        if len(self.cache) < self.MAX:
            self.cache[pid] = hit
        return hit

    def comm(self, pid: int) -> str:
        return self.get(pid)[0]


def memcg_of(root: Root, pid: int) -> str | None:
    """The memory cgroup path of a PID (v1 'memory' hierarchy, else the v2 path); None when
    the process is gone or its cgroup file unreadable."""
    try:
        return pid_cgroup.read(root, pid).path_for("memory")
    except (Unavailable, ParseError):
        return None


def memory_hierarchy(root: Root, pid: int) -> int | None:
    """The hierarchy id holding the memory controller, as /proc/PID/cgroup numbers it (the
    cgroup:cgroup_attach_task tracepoint's dst_root): the v1 'memory' line, else 0 (v2)."""
    try:
        cg = pid_cgroup.read(root, pid)
    except (Unavailable, ParseError):
        return None
    for ln in cg.lines:
        if "memory" in ln.controllers:
            return ln.hierarchy_id
    return 0 if cg.v2_path is not None else None


class Lineage:
    """The kernel's own record of where a short-lived PID was, for when /proc is too late.

    - cgroup:cgroup_attach_task (filtered to the memory hierarchy): PID moved into a cgroup,
      with the path, at a timestamp;
    - sched:sched_process_fork: a child starts in its parent's cgroup.
    `memcg(pid, ts)` answers from these first (the latest move at or before ts), then from the
    live read made when the PID was first seen, then from the parent at the fork.
    """

    MAX = 200_000

    def __init__(self, procs: Procs):
        self.procs = procs
        self.moves: dict[int, list[tuple[int, str]]] = {}   # pid -> [(ts, path)]
        self.parent: dict[int, tuple[int, int]] = {}         # child -> (parent, ts of fork)
        self.first_seen: dict[int, tuple[str, str | None]] = {}

    def on_attach(self, ts: int, pid: int, path: str) -> None:
        if len(self.moves) < self.MAX or pid in self.moves:
            self.moves.setdefault(pid, []).append((ts, path))

    def on_fork(self, ts: int, parent: int, child: int) -> None:
        if len(self.parent) < self.MAX:
            self.parent[child] = (parent, ts)

    def seen(self, pid: int) -> None:
        """Read the PID now (comm, cgroup), while it probably still exists."""
        if pid not in self.first_seen:
            self.first_seen[pid] = self.procs.get(pid)

    def memcg(self, pid: int, ts: int | None = None, _depth: int = 0) -> str | None:
        moves = self.moves.get(pid)
        if moves:
            before = [p for t, p in sorted(moves) if ts is None or t <= ts]
            if before:
                return before[-1]
        live = (self.first_seen.get(pid) or self.procs.get(pid))[1]
        if live is not None:
            return live
        up = self.parent.get(pid)
        if up is not None and _depth < 16:
            return self.memcg(up[0], up[1], _depth + 1)
        return None


# --- a recipe ----------------------------------------------------------------------------------
class Recipe:
    """A trace named by the question it answers. Subclasses set the class attributes, aggregate
    in `on_event` (called from the reader thread; memory bounded by distinct keys) and build
    their typed result in `result`."""

    name = ""
    question = ""
    events: tuple[str, ...] = ()
    overhead = ""
    alternatives: dict[str, str] = {}
    buffer_kb = 2048
    backends: tuple[str, ...] = ("tracefs",)   # declared capability: which backends it has
    Result: type = RecipeResult

    def __init__(self, root: Root, **opts):
        self.root = root
        self.opts = opts
        self.procs = Procs(root)
        self.backend = "tracefs"

    def filters(self) -> dict[str, str]:
        return {}

    def headline(self, seconds) -> str:
        dur = f"for {seconds:g} s" if seconds else "until Ctrl-C"
        return f"Tracing {self.question} {dur}... Hit Ctrl-C to end."

    def session(self, seconds: float | None = 10, *, max_events: int = 2_000_000, **kw):
        return trace(self.events, filter=self.filters(), seconds=seconds, max_events=max_events,
                     buffer_kb=kw.pop("buffer_kb", self.buffer_kb), on_event=self.on_event,
                     alternatives=self.alternatives, **kw)

    def on_event(self, e) -> None:
        raise NotImplementedError

    def body(self) -> dict:
        """The recipe's own fields of its Result (tracefs backend)."""
        raise NotImplementedError

    def meta(self, t) -> dict:
        return {"recipe": self.name, "question": self.question, "backend": "tracefs",
                "seconds": round(t.duration_s, 3), "events": t.count, "lost": t.lost,
                "truncated": t.truncated, "enabled": tuple(t.enabled), "filters": dict(t.filters),
                "missing": tuple(MissingEvent(m.event, m.reason, m.alternative) for m in t.missing),
                "overhead": self.overhead, "errors": tuple(t.errors)}

    def result(self, t) -> RecipeResult:
        body = self.body()
        notes = tuple(body.pop("notes", ()))
        return self.Result(**self.meta(t), **body, notes=notes)


class BpftraceBackend:
    """Mixin: the recipe can also run as one bpftrace program (`backend="bpftrace"`).

    `session()` then returns a `bpftrace.Run` (same `with ... as t: t.wait()` shape) and
    `result()` builds the same Result from the maps bpftrace aggregated in the kernel; the
    tracefs path is left exactly as it is.
    """

    backends = ("tracefs", "bpftrace")
    bpftrace_overhead = ""

    def __init__(self, root: Root, backend: str = "tracefs", **opts):
        super().__init__(root, **opts)
        self.backend = backend

    def session(self, seconds=10, **kw):
        if self.backend != "bpftrace":
            return super().session(seconds, **kw)
        from ..bpftrace import Run

        return Run(self.bpftrace_program(), seconds, on_printf=self.bpftrace_printf)

    def bpftrace_program(self) -> str:
        raise NotImplementedError

    def bpftrace_printf(self, msg: str) -> None:
        pass

    def bpftrace_summary(self, out) -> dict:
        """The recipe's own fields of its Result, from bpftrace's maps."""
        raise NotImplementedError

    def result(self, t):
        if self.backend != "bpftrace":
            return super().result(t)
        ev = t.output.maps.get("@events", 0)
        body = self.bpftrace_summary(t.output)
        notes = tuple(body.pop("notes", ()))
        return self.Result(recipe=self.name, question=self.question, backend="bpftrace",
                           seconds=round(t.duration_s, 3), events=ev if isinstance(ev, int) else 0,
                           lost=t.lost, truncated=False, enabled=tuple(self.events),
                           overhead=self.bpftrace_overhead, errors=tuple(t.errors),
                           notes=notes, program=t.program, **body)
