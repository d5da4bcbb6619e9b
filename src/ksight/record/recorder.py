"""The recorder's loop: sample every S seconds through a live Collector, store one frame per
sample (record/store.py), and hand each snapshot to the watcher (record/watch.py) when there is one.

What one sample holds (enough to re-run every rule later): the system sources every area's rules
read (diagnose.engine.plan_for), the process table cut to the N largest by resident memory, the N
busiest by CPU since the sample before and any process the watcher follows, and the socket-state
summary (counts per state, network namespace and owner; listeners' queues) instead of the socket
table. Only one recorder writes a store at a time (`StoreLock`: an flock, released by the kernel
when its holder dies, so a killed recorder's lock never blocks). SIGTERM and SIGINT finish the
sample being taken, then the loop ends.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .store import RecordingError, RecordingWriter, Retention

DB_NAME = "ksight.db"


def state_dir(env: dict | None = None, euid: int | None = None) -> str:
    """Where the recording lives by default: $STATE_DIRECTORY under systemd (StateDirectory=),
    else /var/lib/ksight as root, else $XDG_STATE_HOME/ksight (~/.local/state/ksight)."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    sd = env.get("STATE_DIRECTORY")
    if sd:
        return sd.split(":")[0]
    if euid == 0:
        return "/var/lib/ksight"
    xdg = env.get("XDG_STATE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"),
                                                    ".local", "state")
    return os.path.join(xdg, "ksight")


def default_db(env: dict | None = None, euid: int | None = None) -> str:
    return os.path.join(state_dir(env, euid), DB_NAME)


class StoreLock:
    """An exclusive flock on PATH.lock holding the writer's pid. The kernel drops it when the
    process dies (kill -9 included), so a stale lock file never blocks the next recorder."""

    def __init__(self, db: str):
        self.path = db + ".lock"
        self.fd: int | None = None

    def acquire(self) -> "StoreLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise RecordingError(f"{self.path}: cannot create the recorder's lock: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise RecordingError(f"{self.path[:-5]} is being recorded by another ksight record "
                                 f"(pid {holder}); only one recorder writes a store at a time") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class Stats:
    samples: int = 0
    bytes: int = 0
    failed: int = 0
    cpu_s: float = 0.0  # the recorder's own CPU time (user + system) spent sampling and storing
    findings: int = 0
    last_error: str | None = None
    watcher: str | None = None  # why the watcher is not running, if it is not
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


SOCKETS_EVERY = 10  # samples between two reads of the socket table (its summary is carried between)


def recorder_plan():
    """Every area's rules' needs (diagnose.engine.plan_for), as one plan for every sample, less
    what a sample cannot store: the per-namespace counters (netns_counters is not a SYSTEM
    source). The socket table is read for its summary (sources/socket_summary.py)."""
    import dataclasses

    from ..diagnose.engine import plan_for

    return dataclasses.replace(plan_for(None), netns_counters=False)


def recorder_plans(skip: tuple[str, ...] = ()):
    """(every sample's plan, the plan of every SOCKETS_EVERY-th sample). The socket table is
    stored only as its summary, which no rule reads yet, and reading it (sock_diag in every
    namespace, every process's fds for the owners) was a third of a sample's CPU at 100
    processes (docs/benchmarks.md, issue 13): it is read every SOCKETS_EVERY samples, and the
    summary, which says when it was taken, is carried in the samples between.

    skip: system sources left out (`--skip vmallocinfo`): cheaper samples; the rules that need
    them say on a recording that they could not look."""
    import dataclasses

    full = recorder_plan()
    if skip:
        from ..errors import UsageError

        bad = [n for n in skip if n not in full.sources]
        if bad:
            raise UsageError(f"--skip {', '.join(bad)}: not a source the recorder reads (it reads "
                             f"{', '.join(full.sources)})")
        full = dataclasses.replace(full, sources=tuple(n for n in full.sources if n not in skip))
    light = dataclasses.replace(full, sockets=False,
                                processes=tuple(p for p in full.processes if p != "sockets"))
    # with the table, the other namespaces' listen/SYN/TIME_WAIT counters, kept in the socket
    # summary (model/sockets.py): a rule judges a container's listener on a recording too
    return light, dataclasses.replace(full, netns_counters=True)


def _cpu_ticks(p) -> int | None:
    st = p.stat
    if st is None:
        return None
    return (st.utime_ticks or 0) + (st.stime_ticks or 0)


STICKY_SAMPLES = 30  # a process chosen for its CPU stays this many samples after it last was


def choose_processes(snap, n: int, state: dict, watched=()) -> tuple[list[int], dict]:
    """PIDs to store: the n largest by resident memory, the n that used the most CPU since the
    previous sample (from its cumulative ticks, keyed by pid and start time so a reused pid is not
    taken for the old process), those chosen for their CPU in the last STICKY_SAMPLES samples
    that still run (at most n more), and those watched. Returns them and the state for next time.

    Sticky rows keep the stored set steady: a process that comes and goes from the busiest n
    every second would be written in full each time it comes back (a delta frame stores the
    differences of the rows that stay: measured 3.5 KB frames without, docs/benchmarks.md).
    The CPU ranking compares each process's cumulative utime+stime with its own previous value
    only to rank (a choice of rows to keep, not a rate anyone reads: the stored counters are the
    cumulative ones, and model/series.py computes the rates from them)."""
    procs = snap.processes or {}
    prev_ticks = state.get("ticks", {})
    kept = state.get("kept", {})  # (pid, start) -> samples it stays
    ticks: dict = {}
    keys: dict = {}
    busy = []
    for pid, p in procs.items():
        t = _cpu_ticks(p)
        if t is None:
            continue
        key = (pid, p.stat.starttime_ticks)
        keys[pid] = key
        ticks[key] = t
        before = prev_ticks.get(key)
        if before is not None and t > before:
            busy.append((t - before, pid))
    by_mem = sorted(((p.res_kb or 0, pid) for pid, p in procs.items() if not p.kernel_thread),
                    reverse=True)[:n]
    busy.sort(reverse=True)
    chosen = dict.fromkeys(pid for _, pid in by_mem)
    new_kept = {}
    for _, pid in busy[:n]:
        chosen[pid] = None
        new_kept[keys[pid]] = STICKY_SAMPLES
    extra = sorted(((left - 1, k) for k, left in kept.items()
                    if left > 1 and k not in new_kept and k in ticks and k[0] not in chosen),
                   reverse=True)[:n]
    for left, k in extra:
        chosen[k[0]] = None
        new_kept[k] = left
    chosen.update(dict.fromkeys(pid for pid in watched if pid in procs))
    return sorted(chosen), {"ticks": ticks, "kept": new_kept}


class Recorder:
    def __init__(self, collector, db: str, *, interval: float = 1.0, retention: Retention | None = None,
                 processes: int = 50, triggers: tuple[str, ...] | None = None,
                 seconds: float | None = None, keyframe_every: int | None = None,
                 progress: Callable[[str], None] | None = None, watcher=True,
                 on_sample: Callable[[Stats], None] | None = None,
                 heartbeat: Callable[[Stats], None] | None = None, skip: tuple[str, ...] = ()):
        self.collector = collector
        self.db = db
        self.interval = interval
        self.retention = retention
        self.nproc = processes
        self.triggers = triggers
        self.seconds = seconds
        self.keyframe_every = keyframe_every
        self.progress = progress
        self.stats = Stats()
        self._stop = False
        self._sleeping = False
        self._want_watcher = watcher
        self.watcher = None
        self.on_sample = on_sample  # called after each sample is committed (tests, bench)
        self.heartbeat = heartbeat  # called after each sample with the stats (the CLI's line)
        self.skip = tuple(skip)

    # ---- signals: finish the sample being taken, then stop
    def _on_signal(self, signum, frame):
        self._stop = True
        if self._sleeping:
            raise _Stop()

    def stop(self) -> None:
        self._stop = True

    def bundle_dir(self) -> str:
        """Where the watcher's triggers write their deep-evidence bundles: beside the recording."""
        return os.path.splitext(os.path.abspath(self.db))[0] + "-bundles"

    def _make_watcher(self):
        """record/watch.Watcher (branch h-watch) when this ksight has it: every rule on each window,
        triggers capturing bundles (only `--trigger` rules when given). A --trigger naming an
        unknown rule is a usage error (raised); any other failure leaves the recording running
        without it, and says why."""
        if not self._want_watcher:
            return None
        try:
            from . import watch
        except ImportError:
            self.stats.watcher = ("record/watch.py is not part of this ksight: samples are stored, "
                                  "no rule runs while recording")
            return None
        from ..errors import UsageError

        try:
            return watch.Watcher(triggers=set(self.triggers) if self.triggers else None,
                                 bundle_dir=self.bundle_dir())
        except UsageError:
            raise
        except Exception as e:  # the watcher is optional: the recording goes on without it
            self.stats.watcher = f"the watcher could not start: {type(e).__name__}: {e}"
            return None

    def run(self) -> Stats:
        d = os.path.dirname(os.path.abspath(self.db))
        try:
            os.makedirs(d, mode=0o750, exist_ok=True)
        except OSError as e:
            raise RecordingError(f"{d}: cannot create the recording's directory: {e.strerror} "
                                 "(give another with --db PATH)") from None
        lock = StoreLock(self.db).acquire()
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        writer = None
        try:
            plan, full = recorder_plans(self.skip)
            first = self.collector.sample(full)
            kwargs = {"keyframe_every": self.keyframe_every} if self.keyframe_every else {}
            writer = RecordingWriter.create_or_open(self.db, retention=self.retention,
                                                    interval=self.interval,
                                                    hostname=first.host.hostname, **kwargs)
            self.watcher = self._make_watcher()
            if self.watcher is not None:
                writer.set_meta("bundle_dir", self.bundle_dir())
            self._loop((plan, full), first, writer)
        finally:
            close = getattr(self.watcher, "close", None)
            if close is not None:
                try:
                    close()  # waits (bounded) for a capture still running
                except Exception as e:
                    self.stats.last_error = f"watcher: {type(e).__name__}: {e}"
            for s, h in old.items():
                signal.signal(s, h)
            if writer is not None:
                writer.close()
            lock.release()
        return self.stats

    def _loop(self, plans, snap, writer) -> None:
        plan, full = plans
        summary = None
        chooser: dict = {}
        start = time.monotonic()
        k = 0
        t0 = time.monotonic()
        while True:
            c0 = time.process_time()
            watched = tuple(getattr(self.watcher, "watched_pids", lambda: ())()) if self.watcher else ()
            pids, chooser = choose_processes(snap, self.nproc, chooser, watched)
            snap, summary = _with_socket_summary(snap, summary)
            try:
                self.stats.bytes += writer.append(snap, _stored(snap, pids))
                self.stats.samples += 1
                if self.on_sample is not None:
                    self.on_sample(self.stats)
            except RecordingError as e:
                self.stats.failed += 1
                self.stats.last_error = str(e)
                if self.progress:
                    self.progress(f"ksight record: {e}")
            if self.watcher is not None:
                try:
                    found = self.watcher.feed(snap) or []
                    self.stats.findings += len(found)
                except Exception as e:  # a rule's bug must not stop the recording
                    self.stats.last_error = f"watcher: {type(e).__name__}: {e}"
            self.stats.cpu_s += time.process_time() - c0
            self._heartbeat(time.monotonic() - t0)
            if self._stop:
                return
            k += 1
            delay = start + k * self.interval - time.monotonic()
            if delay < 0:  # a sample took longer than the interval: skip the ticks it overran
                k += int(-delay // self.interval) + 1
                delay = start + k * self.interval - time.monotonic()
            if self.seconds is not None and k * self.interval > self.seconds + 1e-9:
                return
            try:
                self._sleeping = True
                if self._stop:
                    return
                time.sleep(max(0.0, delay))
            except _Stop:
                return
            finally:
                self._sleeping = False
            c0 = time.process_time()
            snap = self.collector.sample(full if k % SOCKETS_EVERY == 0 else plan)
            self.stats.cpu_s += time.process_time() - c0

    def _heartbeat(self, elapsed: float) -> None:
        self.stats.elapsed_s = elapsed
        if self.heartbeat is not None:
            self.heartbeat(self.stats)


class _Stop(BaseException):
    pass


def _stored(snap, pids):
    """The processes to store: those chosen, without their socket inodes (read only in the samples
    that read the socket table; the summary holds what they were for)."""
    import dataclasses

    procs = snap.processes or {}
    out = []
    for pid in pids:
        p = procs[pid]
        out.append(p if p.socket_inodes is None else dataclasses.replace(p, socket_inodes=None))
    return out


def _with_socket_summary(snap, last):
    """(the snapshot with sources['socket_summary'], what to pass next time). Made from the
    snapshot's socket table when it holds one (model/sockets.summarise: with the CLOSE_WAIT
    sockets already there at the previous read, ksight's namespace's local port range, and the
    other namespaces' counters when the snapshot read them); else the last one is carried (its
    taken_at says when it was read), so every sample holds the source and delta frames stay
    small. `last` is what the previous call returned (None at first)."""
    import dataclasses

    from ..sources import SYSTEM

    from ..model.snapshot import Missing

    if "socket_summary" not in SYSTEM:
        return snap, None
    summary, keys = last if last is not None else (None, None)
    if snap.sockets is not None:
        from ..model.sockets import close_wait_keys, summarise

        sc = snap.get("sysctl")
        rng = sc.ints("net.ipv4.ip_local_port_range") if sc is not None else None
        summary = dataclasses.replace(
            summarise(snap.sockets, port_range=rng, previous=keys,
                      ns_counters=snap.get("netns_counters")), taken_at=snap.taken_at)
        keys = close_wait_keys(snap.sockets)
    # every sample says the same about the table (rules that need it cannot look on a recording)
    why = Missing("sockets", "a recording stores the socket summary (socket_summary), not the socket table")
    unavailable = tuple(m for m in snap.unavailable if m.source != "sockets"
                        and not m.source.startswith("netns_counters")) + (why,)
    # the other namespaces' counters are in the summary (netns_counters is not a stored source)
    sources = {k: v for k, v in snap.sources.items() if k != "netns_counters"}
    if summary is not None:
        sources["socket_summary"] = summary
    return (dataclasses.replace(snap, sources=sources, sockets=None, unavailable=unavailable),
            (summary, keys))


__all__ = ["Recorder", "StoreLock", "state_dir", "default_db", "choose_processes", "recorder_plan",
           "recorder_plans"]
