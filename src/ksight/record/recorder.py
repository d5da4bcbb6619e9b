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

import dataclasses
import fcntl
import gc
import os
import signal
import time
from collections.abc import Callable
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

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
    rankings: int = 0  # rankings of every process by its stat alone (ProcessPicker)
    postponed: int = 0  # rankings that waited: the processes read accounted for the CPU used


def _sockets_every() -> int:
    from ..sources import SYSTEM

    src = SYSTEM.get("socket_summary")
    return max(1, src.record_every) if src is not None else 30


# samples between two reads of the socket table (its summary is carried between): the socket
# summary's declared cadence (sources.SYSTEM["socket_summary"].record_every, with the reason)
SOCKETS_EVERY = _sockets_every()


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
# samples between two rankings of every process (collect.processes.rank: each one's stat); the
# samples between read only the chosen ones' stat and status
RANK_EVERY = 5
# ...unless the CPU the machine spent in user and system time since the last ranking is all but
# accounted for by the processes the samples read (less than UNSEEN_CPU of one CPU outside
# them): then nobody else can have become one of the busiest, and the ranking waits, up to
# RANK_AT_LEAST samples (a process outside the chosen ones that grows, but hardly runs, is
# ranked by memory within that)
UNSEEN_CPU = 0.05
RANK_AT_LEAST = 30


def _ranks_of(procs: dict) -> dict:
    """collect.processes.Rank rows of a process table (a sample that read every process)."""
    from ..collect.processes import Rank

    out = {}
    for pid, p in procs.items():
        t = _cpu_ticks(p)
        if t is None:
            continue
        out[pid] = Rank(t, p.stat.starttime_ticks, p.res_kb or 0, bool(p.kernel_thread))
    return out


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
    return choose_ranked(_ranks_of(snap.processes or {}), n, state, watched)


def choose_ranked(ranks: dict, n: int, state: dict, watched=(), samples: int = 1) -> tuple[list[int], dict]:
    """choose_processes on collect.processes.Rank rows (pid -> Rank), `samples` samples after
    the previous ranking (a chosen process's stickiness counts down by that many). A process
    the previous ranking did not see (started since, or its pid reused) counts all its ticks."""
    prev_ticks = state.get("ticks", {})
    kept = state.get("kept", {})  # (pid, start) -> samples it stays
    ticks: dict = {}
    keys: dict = {}
    busy = []
    for pid, r in ranks.items():
        key = (pid, r.starttime)
        keys[pid] = key
        t = ticks[key] = r.ticks
        # a process the previous ranking did not see started since: all its ticks are new
        before = prev_ticks.get(key, 0 if prev_ticks else None)
        if before is not None and t > before:
            busy.append((t - before, pid))
    by_mem = sorted(((r.rss_kb, pid) for pid, r in ranks.items() if not r.kernel_thread),
                    reverse=True)[:n]
    busy.sort(reverse=True)
    chosen = dict.fromkeys(pid for _, pid in by_mem)
    new_kept = {}
    for _, pid in busy[:n]:
        chosen[pid] = None
        new_kept[keys[pid]] = STICKY_SAMPLES
    extra = sorted(((left - samples, k) for k, left in kept.items()
                    if left > samples and k not in new_kept and k in ticks and k[0] not in chosen),
                   reverse=True)[:n]
    for left, k in extra:
        chosen[k[0]] = None
        new_kept[k] = left
    chosen.update(dict.fromkeys(pid for pid in watched if pid in ranks))
    return sorted(chosen), {"ticks": ticks, "kept": new_kept}


class ProcessPicker:
    """Which processes each sample reads and stores: the recorder keeps the n largest by memory
    and the n busiest by CPU (choose_ranked), but ranking needs every process and storing only
    those. So every RANK_EVERY samples every process's stat is read (collect.processes.rank:
    ticks, rss, start time, kernel thread; or the table of a sample that read every process),
    the choice is made, and the samples read stat and status of the chosen ones only (plus the
    watched ones, read every sample). CPU is ranked on the ticks used since the previous
    ranking: the busiest over the last RANK_EVERY samples (sticky for STICKY_SAMPLES). A process
    that starts between two rankings is stored from the next one; the first ranking is
    followed by another one sample later, so the busiest are known from the second sample on.
    A ranking due waits while the processes read account for the machine's CPU time (less
    than UNSEEN_CPU of one CPU outside them since the last ranking: `note`), up to
    RANK_AT_LEAST samples. Measured cost in docs/benchmarks.md (issue 13)."""

    def __init__(self, n: int, rank_every: int = RANK_EVERY, unseen_cpu: float = UNSEEN_CPU,
                 rank_at_least: int = RANK_AT_LEAST):
        self.n = n
        self.rank_every = max(1, rank_every)
        self.unseen_cpu = unseen_cpu
        self.rank_at_least = max(self.rank_every, rank_at_least)
        self.state: dict = {}
        self.chosen: tuple[int, ...] = ()
        self.total = 0  # processes at the last ranking
        self.since: int | None = None  # samples since the last ranking (None: never ranked)
        self.rankings = 0
        self.postponed = 0  # rankings that waited: the CPU was accounted for
        self._last: tuple | None = None  # (time, busy ticks, {(pid, start): ticks}) of the last sample
        self._unseen = 0.0  # ticks of CPU outside the processes read, since the last ranking
        self._unseen_s = 0.0  # over this many seconds
        self._clk = 100

    def due(self) -> bool:
        if self.since is None:
            return True
        if self.rankings == 1:
            return self.since >= 1
        if self.since < self.rank_every:
            return False
        if self.since >= self.rank_at_least or self._unseen_s <= 0:
            return True
        if self._unseen / self._unseen_s > self.unseen_cpu * self._clk:
            return True
        if self.since == self.rank_every:
            self.postponed += 1
        return False

    def rank(self, ranks: dict, watched=()) -> None:
        samples = self.since or 1
        pids, self.state = choose_ranked(ranks, self.n, self.state, watched, samples)
        self.chosen = tuple(pids)
        self.total = len(ranks)
        self.since = 0
        self.rankings += 1
        self._unseen = self._unseen_s = 0.0
        self._last = None  # the set read changes: the next interval is not compared

    def note(self, snap) -> None:
        """After each sample: the CPU time (user, nice, system of /proc/stat) the processes it
        read do not account for, since the previous sample."""
        st = snap.get("stat")
        t = snap.monotonic if snap.monotonic is not None else snap.taken_at
        cpu = getattr(st, "cpu_total", None)
        if cpu is None or t is None or snap.processes is None:
            self._last = None
            return
        self._clk = snap.host.clk_tck or 100
        busy = (cpu.user_ticks or 0) + (cpu.nice_ticks or 0) + (cpu.system_ticks or 0)
        mine = {}
        for pid, p in snap.processes.items():
            s = p.stat
            if s is not None:
                mine[(pid, s.starttime_ticks)] = (s.utime_ticks or 0) + (s.stime_ticks or 0)
        last = self._last
        if last is not None and t > last[0]:
            before = last[2]
            seen = sum(v - before[k] for k, v in mine.items() if k in before and v >= before[k])
            self._unseen += max(0, busy - last[1] - seen)
            self._unseen_s += t - last[0]
        self._last = (t, busy, mine)

    def pids(self, watched=()) -> tuple[int, ...]:
        """The PIDs this sample reads: the chosen ones and those watched now."""
        if not watched:
            return self.chosen
        return tuple(dict.fromkeys(self.chosen + tuple(watched)))

    def sampled(self) -> None:
        if self.since is not None:
            self.since += 1


class Cadence:
    """Sources read every `record_every` samples (sources.Source: settings, and costly sources
    whose growth the rules judge from another source read every sample), their last value
    carried in the samples between. A carried sample says so: Missing("NAME:carried", "read
    every K samples; this value is from T"), and the reasons the source was unavailable at its
    last read are carried too. Counted in samples, not ticks (an overrun skips ticks)."""

    def __init__(self, plan):
        from ..sources import SYSTEM

        self.every = {n: SYSTEM[n].record_every for n in plan.sources
                      if n in SYSTEM and SYSTEM[n].record_every > 1}
        # the order take() fills a snapshot's sources in (those read after the process scan
        # last): a carried sample keeps it, or every delta frame around a read would store the
        # sources' values whole (the frame's name list changes: measured 14-18 KB frames)
        self.order = ([n for n in plan.sources if not (n in SYSTEM and SYSTEM[n].after_processes)]
                      + [n for n in plan.sources if n in SYSTEM and SYSTEM[n].after_processes])
        self.since: dict[str, int] = {}  # name -> samples since it was read
        self.last: dict[str, tuple] = {}  # name -> (value or None, its Missing entries, carried note)
        self._plans: dict[tuple, object] = {}

    def plan(self, plan):
        """`plan` without the sources this sample carries."""
        if not self.every:
            return plan
        skip = tuple(n for n, k in self.every.items()
                     if n in self.last and self.since.get(n, 0) < k)
        if not skip:
            return plan
        key = (id(plan), skip)
        got = self._plans.get(key)
        if got is None:
            import dataclasses

            got = self._plans[key] = (plan, dataclasses.replace(
                plan, sources=tuple(n for n in plan.sources if n not in skip)))
        return got[1]

    def fill(self, snap):
        """The snapshot with the carried sources put back (and the new reads remembered)."""
        if not self.every:
            return snap
        from ..model.snapshot import Missing

        sources = None
        extra: list = []
        for name, k in self.every.items():
            if name in snap.sources or snap.missing(name) is not None:  # read now
                miss = tuple(m for m in snap.unavailable
                             if m.source == name or m.source.startswith(name + ":"))
                when = _clock_text(snap.taken_at)
                note = Missing(f"{name}:carried", f"read every {k} samples; this value is from "
                                                  f"{when}")
                self.last[name] = (snap.sources.get(name), miss, note)
                self.since[name] = 1
                continue
            got = self.last.get(name)
            if got is None:
                continue
            self.since[name] = self.since.get(name, 0) + 1
            value, miss, note = got
            if value is not None:
                if sources is None:
                    sources = dict(snap.sources)
                sources[name] = value
            extra.extend(miss)
            extra.append(note)
        if sources is None and not extra:
            return snap
        if sources is not None:
            ordered = {n: sources[n] for n in self.order if n in sources}
            if len(ordered) < len(sources):
                ordered.update(sources)
            sources = ordered
        return dataclasses.replace(snap, sources=snap.sources if sources is None else sources,
                                   unavailable=tuple(snap.unavailable) + tuple(extra))


def _clock_text(t: float | None) -> str:
    if t is None:
        return "an earlier sample"
    import time as _time

    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.localtime(t))


class Recorder:
    def __init__(self, collector, db: str, *, interval: float = 1.0, retention: Retention | None = None,
                 processes: int = 50, triggers: tuple[str, ...] | None = None,
                 seconds: float | None = None, keyframe_every: int | None = None,
                 progress: Callable[[str], None] | None = None, watcher=True,
                 on_sample: Callable[[Stats], None] | None = None,
                 heartbeat: Callable[[Stats], None] | None = None, skip: tuple[str, ...] = (),
                 rank_every: int = RANK_EVERY):
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
        self.rank_every = rank_every  # 0: every sample reads every process (no ranking by stat)

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
        _raise_nofile()
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
            gc_was = _gc_for_loop()
            try:
                self._loop((plan, full), first, writer)
            finally:
                _gc_restore(gc_was)
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
        cadence = Cadence(full)
        picker = ProcessPicker(self.nproc, self.rank_every)
        root = getattr(self.collector, "root", None)
        # ranking by stat alone needs the live /proc; elsewhere every sample reads every process
        can_rank = root is not None and bool(getattr(root, "live", False)) and self.rank_every > 0
        whole = True  # the first sample read every process (the full plan)
        since_sockets = 0  # samples since the socket table was read (counted: overruns skip ticks)
        snap = cadence.fill(snap)
        start = time.monotonic()
        k = 0
        t0 = time.monotonic()
        while True:
            c0 = time.process_time()
            watched = tuple(getattr(self.watcher, "watched_pids", lambda: ())()) if self.watcher else ()
            if whole and snap.processes is not None:
                picker.rank(_ranks_of(snap.processes), watched)
            snap, summary = _with_socket_summary(snap, summary)
            snap = _cut(snap, picker.pids(watched), picker.total)
            try:
                self.stats.bytes += writer.append(snap)
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
            picker.sampled()
            since_sockets += 1
            if since_sockets >= SOCKETS_EVERY:  # the socket table needs every process's fds
                snap, whole = self.collector.sample(cadence.plan(full)), True
                since_sockets = 0
            elif not can_rank:
                snap, whole = self.collector.sample(cadence.plan(plan)), True
            else:
                if picker.due():
                    from ..collect.processes import rank

                    picker.rank(rank(root, snap.host.page_size), watched)
                    self.stats.rankings += 1
                p = dataclasses.replace(cadence.plan(plan), pids=picker.pids(watched))
                snap, whole = self.collector.sample(p), False
            picker.note(snap)
            self.stats.postponed = picker.postponed
            snap = cadence.fill(snap)
            self.stats.cpu_s += time.process_time() - c0

    def _heartbeat(self, elapsed: float) -> None:
        self.stats.elapsed_s = elapsed
        if self.heartbeat is not None:
            self.heartbeat(self.stats)


NOFILE_WANTED = 16384  # the soft RLIMIT_NOFILE the recorder raises itself to (within the hard one)


def _raise_nofile() -> None:
    """The scan and the ranking keep procfs fds open between samples (collect/processes.py: up
    to a quarter of the soft RLIMIT_NOFILE), and systemd starts services at a soft 1,024: that
    would keep 256, and at 1,000 processes most reads would open and close their file again
    (stat: ~9 us a process instead of ~4). The soft limit is raised to NOFILE_WANTED or the hard
    limit, whichever is lower, as daemons do; never lowered."""
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (OSError, ValueError):
        pass  # a container may refuse: the kept fds are then fewer, nothing else changes


GC_YOUNG = 20_000  # the loop's threshold of the GC's youngest generation (Python's default: 700)


def _gc_for_loop() -> tuple | None:
    """The cyclic GC set for the sampling loop; what to restore after (None: left as it was).
    - Every object alive after start-up (modules, the rules, codecs, the first sample's plan)
      moves to the collector's permanent generation (gc.freeze): a full collection in the loop
      then visits only what the samples made since, not the whole program each time (measured
      in the loop at ~1,000 processes: one of ~17-23 ms every ~25 samples, ~0.7 ms a sample).
      Nothing frozen is freed meanwhile: it is start-up state kept for the recorder's life.
    - The youngest generation is collected after GC_YOUNG allocations instead of 700: a sample
      makes thousands of objects that reference counting frees when the sample is stored and
      judged (no cycles among them), and at 700 the GC walked the young ones about twice a
      sample (docs/benchmarks.md, issue 13). Cyclic garbage is still collected, later.
    Not when the GC is off or something else froze first (theirs is not undone)."""
    if not gc.isenabled() or gc.get_freeze_count():
        return None
    was = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(was[0], GC_YOUNG), *was[1:])
    return was


def _gc_restore(was: tuple | None) -> None:
    if was is not None:
        gc.set_threshold(*was)
        gc.unfreeze()


class _Stop(BaseException):
    pass


def _cut(snap, pids, total: int):
    """The sample as stored and judged: its process table cut to `pids` (those it holds), without
    their socket inodes (read only in the samples that read the socket table; the summary holds
    what they were for), and a Missing("processes:sample") that says how many of how many
    processes (at the last ranking) it holds."""
    import dataclasses

    from ..model.snapshot import Missing
    from ..store.samples import SUBSET

    procs = snap.processes
    if procs is None:
        return snap
    out = {}
    for pid in pids:
        p = procs.get(pid)
        if p is not None:
            out[pid] = p if p.socket_inodes is None else dataclasses.replace(p, socket_inodes=None)
    total = max(total, len(procs))
    unavailable = snap.unavailable
    if len(out) < total:
        unavailable = tuple(unavailable) + (Missing(SUBSET, f"the sample holds {len(out)} of {total} processes"),)
    return dataclasses.replace(snap, processes=out, unavailable=unavailable)


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
           "recorder_plans", "choose_ranked", "ProcessPicker", "Cadence", "RANK_EVERY"]
