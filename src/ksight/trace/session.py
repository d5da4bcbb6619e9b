"""`trace(events, filter=..., seconds=...)`: a bounded tracefs session in a private instance.

    with trace(["vmscan:mm_vmscan_direct_reclaim_begin", "vmscan:mm_vmscan_direct_reclaim_end"],
               seconds=5) as t:
        run_the_workload()          # or t.wait() to trace for `seconds` (Ctrl-C ends early)
    t.events, t.lost, t.missing

A reader thread drains the per-CPU ring buffers every `poll_s` while the body runs. Bounds:
`seconds` (tracing is switched off when it elapses, even if the body goes on), `max_events`
(tracing is switched off at that count, `t.truncated` says so), `buffer_kb` (kernel memory per
CPU). With `on_event=`, events are handed to the callback and not kept (memory stays flat).
On exit (normal, exception, Ctrl-C, SIGTERM while in `wait()`) the instance is disabled and
removed; tracefs is unmounted again if this process mounted it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import Unavailable
from . import tracefs
from .ringbuf import parse_page


@dataclass
class Missing:
    event: str
    reason: str
    alternative: str | None = None


@dataclass
class Trace:
    events_wanted: tuple[str, ...]
    seconds: float | None
    max_events: int
    buffer_kb: int
    events: list = field(default_factory=list)
    count: int = 0
    lost: int = 0                  # events the kernel dropped (ring full); -1 = some, unknown
    truncated: bool = False        # stopped at max_events
    missing: list[Missing] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    filters: dict[str, str] = field(default_factory=dict)
    instance: str = ""
    clock: str = ""
    started: float = 0.0
    ended: float = 0.0
    stale_removed: list[str] = field(default_factory=list)
    mounted_tracefs: bool = False
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.ended or time.monotonic()) - self.started)

    def wait(self) -> None:
        """Block until `seconds` elapse (or Ctrl-C / SIGTERM, which end the trace early)."""
        old = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            old = signal.signal(signal.SIGTERM, _sigterm)
        try:
            limit = self.seconds if self.seconds is not None else float("inf")
            while not self._stop.is_set() and time.monotonic() - self.started < limit:
                self._stop.wait(0.1)
        except (KeyboardInterrupt, _Terminated):
            pass
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)

    def stop(self) -> None:
        self._stop.set()


class _Terminated(Exception):
    pass


def _sigterm(signum, frame):
    raise _Terminated()


class trace:  # noqa: N801  (a context manager named like a function, as the API reads)
    """Context manager: trace `events` in a private tracefs instance; see the module doc."""

    def __init__(self, events, filter=None, seconds: float | None = 10.0, *,
                 max_events: int = 1_000_000, buffer_kb: int = 2048, poll_s: float = 0.1,
                 on_event=None, alternatives: dict | None = None, require_all: bool = False):
        self.wanted = tuple(events)
        if isinstance(filter, str) or filter is None:
            self.filters = {e: filter for e in self.wanted if filter}
        else:
            self.filters = dict(filter)
        self.alternatives = alternatives or {}
        self.require_all = require_all
        self.on_event = on_event
        self.poll_s = poll_s
        self.t = Trace(self.wanted, seconds, max_events, buffer_kb)
        self._inst = None
        self._thread = None
        self._acquired = False

    # -- setup ---------------------------------------------------------------------------
    def __enter__(self) -> Trace:
        t = self.t
        if os.geteuid() != 0:
            raise Unavailable("tracefs", "tracing needs root (CAP_SYS_ADMIN to use tracefs)")
        mnt = tracefs.acquire()
        self._acquired = True
        try:
            self._inst = inst = tracefs.Instance(mnt, buffer_kb=t.buffer_kb)
            t.instance, t.clock = inst.name, inst.clock
            t.stale_removed = inst.stale_removed
            t.mounted_tracefs = tracefs.mounted_by_us()
            for ev in self.wanted:
                use = ev
                if not inst.has_event(ev):
                    alt = self.alternatives.get(ev)
                    if alt and inst.has_event(alt):
                        t.missing.append(Missing(ev, "not on this kernel", alt))
                        use = alt
                    else:
                        t.missing.append(Missing(ev, "not on this kernel"
                                                 + (f" (nor {alt})" if alt else "")))
                        continue
                if use in t.enabled:
                    continue
                inst.load_format(use)
                flt = self.filters.get(ev) or self.filters.get(use)
                inst.enable(use, flt)
                t.enabled.append(use)
                if flt:
                    t.filters[use] = flt
            if not t.enabled:
                raise Unavailable("tracefs", "none of the events exist on this kernel: "
                                  + ", ".join(self.wanted))
            if self.require_all and t.missing:
                raise Unavailable("tracefs", "missing on this kernel: "
                                  + ", ".join(m.event for m in t.missing))
            self._decoders = inst.decoders()
            self._fds = {c: inst.open_raw(c) for c in inst.cpus()}
            self._buf = inst.subbuf_bytes
            self._stats0 = inst.stats()
            inst.on()
            t.started = time.monotonic()
            self._thread = threading.Thread(target=self._reader, name="ksight-trace", daemon=True)
            self._thread.start()
        except BaseException:
            self._teardown()
            raise
        return t

    # -- reading -------------------------------------------------------------------------
    def _drain(self) -> None:
        t = self.t
        for cpu, fd in self._fds.items():
            for _ in range(100_000):
                try:
                    page = os.read(fd, self._buf)
                except BlockingIOError:
                    break
                except OSError as exc:
                    t.errors.append(f"cpu{cpu}: {exc.strerror}")
                    break
                if not page:
                    break
                evs, lost, unknown = parse_page(page, self._decoders, cpu)
                if lost:
                    t.lost = -1 if (lost < 0 or t.lost < 0) else t.lost + lost
                self._deliver(evs)

    def _deliver(self, evs) -> None:
        t = self.t
        room = t.max_events - t.count
        if room <= 0:
            return
        if len(evs) > room:
            evs = evs[:room]
            t.truncated = True
        t.count += len(evs)
        if self.on_event is not None:
            cb = self.on_event
            for e in evs:
                try:
                    cb(e)
                except Exception as exc:  # a recipe bug must not leave tracing on
                    t.errors.append(f"on_event: {exc!r}")
                    t.stop()
                    break
        else:
            t.events.extend(evs)
        if t.count >= t.max_events:
            t.truncated = True
            self._inst.off()
            t.stop()

    def _reader(self) -> None:
        t = self.t
        limit = t.seconds if t.seconds is not None else float("inf")
        try:
            while not t._stop.is_set():
                self._drain()
                if time.monotonic() - t.started >= limit:
                    self._inst.off()
                    t.stop()
                    break
                t._stop.wait(self.poll_s)
        except Exception as exc:
            t.errors.append(f"reader: {exc!r}")
            t.stop()

    # -- teardown ------------------------------------------------------------------------
    def __exit__(self, et, ev, tb) -> None:
        self._teardown()

    def _teardown(self) -> None:
        t = self.t
        inst = self._inst
        try:
            if inst is not None:
                inst.off()
                t.stop()
                if self._thread is not None:
                    self._thread.join(timeout=5)
                    if t.started and not t.ended:
                        t.ended = time.monotonic()
                    try:
                        self._drain()  # what was written before tracing went off
                    except Exception as exc:
                        t.errors.append(f"final drain: {exc!r}")
                    stats = inst.stats()
                    k_lost = 0
                    for cpu, s in stats.items():
                        base = self._stats0.get(cpu, {})
                        k_lost += (s.get("overrun", 0) - base.get("overrun", 0)
                                   + s.get("dropped events", 0) - base.get("dropped events", 0))
                    if t.lost >= 0:
                        t.lost = max(t.lost, k_lost)
                for fd in getattr(self, "_fds", {}).values():
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                self._fds = {}
                inst.close()
        finally:
            if self._acquired:
                self._acquired = False
                tracefs.release()


class interruptible:  # noqa: N801  (a context manager named like a function, as `trace` is)
    """Ctrl-C and SIGTERM end a trace early and cleanly (the caller still gets the trace, and
    reports it): used by `ksight trace` and `ksight leak --trace`.

        with interruptible() as run:
            rec = run.enter(perf.Record(...))       # optional: Ctrl-C stops it too; exited last
            t = run.trace(recipe.session(seconds))  # enter, wait `seconds` or Ctrl-C, exit
        recipe.result(t)

    While the block runs, SIGINT and SIGTERM set `stopped` and call stop() on what is running
    (no KeyboardInterrupt is raised, so no clean-up is skipped); the handlers are in place
    before anything starts, so a signal during set-up cannot skip the clean-up either. Each
    session is left (tracing off, instance removed) before `trace()` returns, also when waiting
    raises; what `enter()` entered is left on the way out of the block, in reverse order, and
    the old handlers are put back last. Handlers are installed from the main thread only
    (Python allows no other); elsewhere the block still runs, with stop() as the only early end.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._live: list = []          # what stop() is called on at a signal
        self._exits = contextlib.ExitStack()  # what enter() entered, to leave at the end
        self._old: dict = {}

    def _signalled(self, signum, frame) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopped.set()
        for s in list(self._live):
            s.stop()

    def __enter__(self) -> "interruptible":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._signalled)
        return self

    def enter(self, cm):
        """Enter `cm` (e.g. a perf.Record) for the rest of the block; a signal stops it too."""
        got = self._exits.enter_context(cm)
        if hasattr(got, "stop"):
            self._live.append(got)
        return got

    def trace(self, session, fallback=None):
        """Enter `session`, wait until its seconds elapse or a signal comes, leave it; returns
        what the session yielded (a Trace, a bpftrace Run). `fallback(exc)`, when given, is
        asked for another session if entering this one raises Unavailable (or re-raises)."""
        import sys

        try:
            t = session.__enter__()
        except Unavailable as exc:
            if fallback is None:
                raise
            session = fallback(exc)
            t = session.__enter__()
        try:
            self._live.append(t)
            if not self.stopped.is_set():
                t.wait()
        except BaseException:
            session.__exit__(*sys.exc_info())
            raise
        session.__exit__(None, None, None)
        return t

    def __exit__(self, et, ev, tb):
        try:
            return self._exits.__exit__(et, ev, tb)
        finally:
            for sig, h in self._old.items():
                signal.signal(sig, h)
            self._old = {}


def check_events(events) -> dict[str, bool]:
    """Which of `events` exist on this kernel (needs tracefs; mounts it briefly if needed)."""
    mnt = tracefs.acquire()
    try:
        return {e: os.path.isdir(os.path.join(mnt, "events", *e.split(":", 1))) for e in events}
    finally:
        tracefs.release()


__all__ = ["trace", "Trace", "Missing", "check_events", "interruptible"]
