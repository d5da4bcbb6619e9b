"""tracefs: find (or mount) it, and run a private instance that always cleans up after itself.

This module is the tracing engine's I/O seam: it is the only code that writes under tracefs.
It never touches the global instance's events or buffer: everything happens inside
`instances/ksight-<pid>-<n>`, which tracefs gives its own buffer, events and filters.

Clean-up contract: `Instance.close()` turns tracing off in the instance, disables every event,
clears filters and removes the instance. Each instance, and a tracefs mount ksight makes, is
written to this process's record in /run/ksight (ksight.pids) BEFORE it is made; when the
process dies without cleaning up (SIGKILL, crash), the next ksight command of any kind removes
what its record lists (`ksight.trace.leftovers.reap`). An instance is only ever removed when its
owner is proven dead (never by PID number alone: see ksight.pids). If ksight mounted tracefs
itself, `release()` unmounts it again when nothing else uses it; if something still does, the
mount stays in the record and a later ksight command unmounts it once it is unused.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import re
import threading

from ..errors import Unavailable, UsageError
from .. import pids
from .format import Decoder, EventFormat, compile_format, parse as parse_format

DEFAULT_MOUNT = "/sys/kernel/tracing"
INSTANCE_PREFIX = "ksight-"
_STALE = re.compile(r"^ksight-(\d+)-(\d+)$")
_counter = itertools.count()
_mount_lock = threading.Lock()
_mount_users = 0
_we_mounted: str | None = None
_mount_eid: int | None = None   # our record's "mount" entry
_use_eid: int | None = None     # our record's "tracefs" entry (we use it: do not unmount)


def tracefs_mount_point(text: str) -> str | None:
    """The tracefs mount point from /proc/self/mountinfo text, or None.

    Prefers a tracefs mount; falls back to `<debugfs>/tracing` (old kernels mount it there).
    """
    from ..errors import ParseError
    from ..sources.mounts import parse

    try:
        entries = parse(text).entries
    except ParseError:
        return None
    debugfs = None
    for m in entries:
        if m.fstype == "tracefs":
            return m.mount_point
        if m.fstype == "debugfs" and debugfs is None:
            debugfs = m.mount_point
    if debugfs is not None:
        return debugfs.rstrip("/") + "/tracing"
    return None


def _read_mountinfo() -> str:
    from ..fs import LiveRoot

    try:
        return LiveRoot().read_text("proc/self/mountinfo")
    except Unavailable:
        return ""


def _mount(target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.mount(b"nodev", target.encode(), b"tracefs", 0, None)
    if r != 0:
        e = ctypes.get_errno()
        raise Unavailable("tracefs", f"cannot mount tracefs at {target}: {os.strerror(e)}"
                          + (" (run as root)" if e in (errno.EPERM, errno.EACCES) else ""))


def _umount(target: str) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.umount2(target.encode(), 0) == 0


def acquire() -> str:
    """The tracefs mount point, mounting it at /sys/kernel/tracing when it is not mounted.

    Pair every call with release(): the last release unmounts tracefs if we mounted it.
    """
    global _mount_users, _we_mounted, _mount_eid, _use_eid
    with _mount_lock:
        mnt = tracefs_mount_point(_read_mountinfo())
        if mnt is None:
            if os.geteuid() != 0:
                raise Unavailable("tracefs", "not mounted, and mounting it needs root")
            if not os.path.isdir(DEFAULT_MOUNT):
                raise Unavailable("tracefs", f"not mounted and {DEFAULT_MOUNT} does not exist "
                                  "(kernel built without CONFIG_TRACING?)")
            if _mount_eid is None:
                _mount_eid = pids.register("mount", path=DEFAULT_MOUNT, ident="mount:" + DEFAULT_MOUNT)
            try:
                _mount(DEFAULT_MOUNT)
            except BaseException:
                pids.unregister(_mount_eid)
                _mount_eid = None
                raise
            _we_mounted = DEFAULT_MOUNT
            mnt = DEFAULT_MOUNT
        check_instances(mnt)
        if _mount_users == 0 and _use_eid is None and os.geteuid() == 0:
            _use_eid = pids.register("tracefs", path=mnt)
        _mount_users += 1
        return mnt


def check_instances(mnt: str) -> None:
    """Raise Unavailable saying why this tracefs cannot give ksight an instance."""
    inst = os.path.join(mnt, "instances")
    try:
        os.stat(inst)
    except PermissionError:
        raise Unavailable("tracefs", f"{inst}: permission denied (tracing needs root)") from None
    except OSError:
        try:
            os.listdir(mnt)
        except PermissionError:
            raise Unavailable("tracefs", f"{mnt}: permission denied (tracing needs root)") from None
        except OSError:
            pass
        raise Unavailable("tracefs", f"{inst} is missing (tracefs without instances)") from None
    if not os.access(inst, os.W_OK | os.X_OK):
        raise Unavailable("tracefs", f"{inst}: permission denied (tracing needs root)")


def in_use(mnt: str) -> bool:
    """True when anything else uses tracefs: an instance, a global tracer or global events."""
    try:
        if os.listdir(os.path.join(mnt, "instances")):
            return True
        with open(os.path.join(mnt, "current_tracer")) as f:
            if f.read().strip() not in ("nop", ""):
                return True
        with open(os.path.join(mnt, "set_event")) as f:
            if f.read().strip():
                return True
        with open(os.path.join(mnt, "uprobe_events")) as f:
            if f.read().strip():
                return True
    except OSError:
        return True
    return False


def release() -> None:
    """Undo acquire(): unmount tracefs if we mounted it, nobody else uses it, and we are last."""
    global _mount_users, _we_mounted, _mount_eid, _use_eid
    with _mount_lock:
        _mount_users = max(0, _mount_users - 1)
        if _mount_users:
            return
        if _use_eid is not None:
            pids.unregister(_use_eid)
            _use_eid = None
        if _we_mounted and not in_use(_we_mounted) and not _other_ksight_uses(_we_mounted):
            if _umount(_we_mounted):
                _we_mounted = None
                pids.unregister(_mount_eid)
                _mount_eid = None
        # still in use: the "mount" entry stays in our record; the next ksight command after we
        # are gone unmounts it once nothing uses it (ksight.trace.leftovers)


def _other_ksight_uses(mnt: str) -> bool:
    return any(e.get("path") == mnt for e in pids.live_entries("tracefs"))


def mounted_by_us() -> bool:
    return _we_mounted is not None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def disable_instance(inst_dir: str) -> None:
    """Stop everything in one instance (best effort, each step on its own)."""
    for rel, val in (("tracing_on", "0"), ("events/enable", "0")):
        try:
            _write(os.path.join(inst_dir, rel), val)
        except OSError:
            pass
    try:
        _write(os.path.join(inst_dir, "set_event"), "")
    except OSError:
        pass


def remove_instance(inst_dir: str) -> bool:
    disable_instance(inst_dir)
    # Filters belong to the instance and vanish with it.
    try:
        os.rmdir(inst_dir)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def our_instances(mnt: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(os.path.join(mnt, "instances")) if _STALE.match(n))
    except OSError:
        return []


def remove_stale(mnt: str, live: "pids.Liveness | None" = None) -> list[str]:
    """Remove ksight instances whose owner is proven dead (after a SIGKILL or a crash): its
    record's flock is free, or, for an unrecorded instance (an older ksight), no process has
    its PID in any namespace. An owner we cannot see (another PID namespace) keeps its instance."""
    removed = []
    live = live or pids.Liveness.now()
    for name in our_instances(mnt):
        pid = int(_STALE.match(name).group(1))
        if not live.gone(pid, "instance:" + name):
            continue
        if remove_instance(os.path.join(mnt, "instances", name)):
            removed.append(name)
    return removed


class Instance:
    """A private tracing instance. Use as a context manager, or call close() in a finally."""

    def __init__(self, mnt: str, *, buffer_kb: int = 1024, clock: str = "mono"):
        self.mnt = mnt
        self.name = f"{INSTANCE_PREFIX}{os.getpid()}-{next(_counter)}"
        self.dir = os.path.join(mnt, "instances", self.name)
        self.stale_removed = remove_stale(mnt)
        # recorded before it exists: a SIGKILL from here on leaves a record the next run reads
        self._eid = pids.register("instance", mnt=mnt, name=self.name, ident="instance:" + self.name)
        try:
            os.mkdir(self.dir)
        except PermissionError:
            pids.unregister(self._eid)
            raise Unavailable("tracefs", "permission denied creating a tracing instance (run as root)") from None
        except OSError as exc:
            pids.unregister(self._eid)
            raise Unavailable("tracefs", f"cannot create instance {self.name}: {exc.strerror}") from None
        self.enabled: list[str] = []
        self.formats: dict[str, EventFormat] = {}
        self.closed = False
        try:
            _write(os.path.join(self.dir, "tracing_on"), "0")
            _write(os.path.join(self.dir, "buffer_size_kb"), str(int(buffer_kb)))
            try:
                _write(os.path.join(self.dir, "trace_clock"), clock)
                self.clock = clock
            except OSError:
                self.clock = "local"
            try:
                self.subbuf_bytes = int(_read(os.path.join(self.dir, "buffer_subbuf_size_kb"))) * 1024
            except (OSError, ValueError):
                self.subbuf_bytes = os.sysconf("SC_PAGE_SIZE")
        except BaseException:
            self.close()
            raise

    # --- events -------------------------------------------------------------------------
    def event_dir(self, full: str) -> str:
        system, _, name = full.partition(":")
        return os.path.join(self.dir, "events", system, name)

    def has_event(self, full: str) -> bool:
        return os.path.isdir(self.event_dir(full))

    def load_format(self, full: str) -> EventFormat:
        system = full.partition(":")[0]
        path = os.path.join(self.event_dir(full), "format")
        try:
            text = _read(path)
        except OSError as exc:
            raise Unavailable(full, f"event format unreadable: {exc.strerror}") from None
        fmt = parse_format(text, system=system, path=path)
        self.formats[full] = fmt
        return fmt

    def enable(self, full: str, filter: str | None = None) -> None:
        d = self.event_dir(full)
        if filter:
            try:
                _write(os.path.join(d, "filter"), filter)
            except OSError:
                msg = self._error_log() or "the kernel rejected it"
                raise UsageError(f"filter {filter!r} for {full}: {msg}") from None
        _write(os.path.join(d, "enable"), "1")
        self.enabled.append(full)

    def _error_log(self) -> str:
        try:
            return _read(os.path.join(self.dir, "error_log")).strip().splitlines()[-1]
        except (OSError, IndexError):
            return ""

    def decoders(self) -> dict[int, tuple[str, Decoder]]:
        return {f.id: (name, compile_format(f)) for name, f in self.formats.items()}

    # --- control ------------------------------------------------------------------------
    def on(self) -> None:
        _write(os.path.join(self.dir, "tracing_on"), "1")

    def off(self) -> None:
        try:
            _write(os.path.join(self.dir, "tracing_on"), "0")
        except OSError:
            pass

    def cpus(self) -> list[int]:
        try:
            return sorted(int(n[3:]) for n in os.listdir(os.path.join(self.dir, "per_cpu"))
                          if n.startswith("cpu") and n[3:].isdigit())
        except OSError:
            return [0]

    def open_raw(self, cpu: int) -> int:
        return os.open(os.path.join(self.dir, "per_cpu", f"cpu{cpu}", "trace_pipe_raw"),
                       os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    def stats(self) -> dict[int, dict[str, int]]:
        """Per-CPU counters from per_cpu/cpuN/stats (overrun, dropped events, ...)."""
        out = {}
        for cpu in self.cpus():
            try:
                out[cpu] = parse_stats(_read(os.path.join(self.dir, "per_cpu", f"cpu{cpu}", "stats")))
            except OSError:
                pass
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        disable_instance(self.dir)
        for _ in range(20):  # rmdir is EBUSY while a reader still holds a file open
            if remove_instance(self.dir):
                pids.unregister(self._eid)
                return
            threading.Event().wait(0.05)
        # could not remove it: it stays in our record, the next ksight command retries

    def __enter__(self) -> "Instance":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_stats(text: str) -> dict[str, int]:
    """per_cpu/cpuN/stats -> {'entries': .., 'overrun': .., 'dropped events': ..} (ints only)."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        v = v.strip()
        if sep and v.isdigit():
            out[k.strip()] = int(v)
    return out


def saved_cmdlines() -> dict[int, str]:
    """PID -> comm as tracefs remembered it (covers processes that exited before we looked)."""
    mnt = tracefs_mount_point(_read_mountinfo())
    out: dict[int, str] = {}
    if mnt is None:
        return out
    try:
        text = _read(os.path.join(mnt, "saved_cmdlines"))
    except OSError:
        return out
    for line in text.splitlines():
        pid, _, comm = line.partition(" ")
        if pid.isdigit() and comm:
            out[int(pid)] = comm
    return out


def enabled_events(inst_dir: str) -> list[str]:
    """Events enabled in an instance (reads its set_event)."""
    try:
        return [l for l in _read(os.path.join(inst_dir, "set_event")).splitlines() if l.strip()]
    except OSError:
        return []
