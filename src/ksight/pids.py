"""Processes ksight itself starts, who owns what ksight left in the kernel, and whether that
owner still lives.

ksight only ever ends processes it started, by PID and start time (never by name).

Identity (see docs/tracing.md, "What a dead run leaves behind"): a PID number alone means
nothing across PID namespaces (pid 812 inside `unshare -p` is another process than pid 812 on
the host). A process is named here by `Proc(pid, start, pidns)`: its PID in its own PID
namespace, its start time (clock ticks since boot, /proc/PID/stat field 22) and the inode of
that PID namespace; `host_pid` is the PID as this process's /proc shows it (NSpid's first
field). `locate()` finds such a process from wherever the caller stands, or says that it
cannot tell (the caller sits in a child PID namespace that cannot see the owner's).

The registry (`/run/ksight`, root only): every ksight process that leaves something in the
kernel or on disk (a tracefs instance, a tracefs mount, a perf/bpftrace child, a temp dir, a lab
cgroup/netns/loop device/swap file/work dir) writes `/run/ksight/<pid>-<rand>.json` listing it
BEFORE making it, and holds an flock on that file for its whole life. The kernel drops the
flock when the process dies, however it dies: a record whose flock can be taken belongs to a
dead owner (proof, in any PID namespace). The next ksight command (any command: `cli/main.py`
stats /run/ksight, which exists only while something is recorded) cleans what dead owners
left (`ksight.cli.cleanup.reap`). Records are replaced atomically (write, flock, rename), so a
record on disk is always whole and always locked while its owner lives.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterable
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

STATE_DIR = "/run/ksight"
INIT_PIDNS = 0xEFFFFFFC  # PROC_PID_INIT_INO: the initial PID namespace's inode, fixed by the kernel
PR_SET_PDEATHSIG = 1


# --- identity ---------------------------------------------------------------------------------
def _status_field(pid: int | str, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def start_ticks(pid: int | str) -> int | None:
    """Start time of a process in clock ticks after boot (/proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    try:
        return int(text[text.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def is_zombie(pid: int | str) -> bool:
    """True when the process has exited and waits to be reaped (state Z or X): it is dead."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
        return text[text.rindex(")") + 2:][:1] in ("Z", "X")
    except (OSError, ValueError):
        return False


def pidns_of(pid: int | str) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
    try:
        return int(link[link.index("[") + 1:-1])
    except ValueError:
        return None


def nspids(pid: int | str) -> list[int]:
    """NSpid: this process's PID in each PID namespace from /proc's down to its own."""
    v = _status_field(pid, "NSpid")
    try:
        return [int(x) for x in v.split()] if v else []
    except ValueError:
        return []


@dataclass(frozen=True)
class Proc:
    """A process, named so that no other PID namespace can mistake it."""
    pid: int              # in its own PID namespace (os.getpid() of the process)
    start: int | None     # clock ticks after boot
    pidns: int | None     # inode of its own PID namespace
    host_pid: int | None = None   # as the recorder's /proc showed it (NSpid[0])

    def jsonable(self) -> dict:
        return {"pid": self.pid, "start": self.start, "pidns": self.pidns, "host_pid": self.host_pid}

    @classmethod
    def of(cls, d: dict) -> "Proc":
        return cls(int(d["pid"]), d.get("start"), d.get("pidns"), d.get("host_pid"))


def describe(pid: int | str = "self") -> Proc | None:
    """The identity of a process this /proc shows (by its PID here), or None if it is gone."""
    ns = nspids(pid)
    start = start_ticks(pid)
    if start is None:
        return None
    own = ns[-1] if ns else (os.getpid() if pid == "self" else int(pid))
    return Proc(own, start, pidns_of(pid), ns[0] if ns else None)


def me() -> Proc:
    p = describe("self")
    return p if p is not None else Proc(os.getpid(), None, None, os.getpid())


def view_is_initial() -> bool:
    """True when this /proc is the initial PID namespace's, i.e. it shows every process."""
    ns = nspids("self")
    if len(ns) == 1:
        return pidns_of("self") == INIT_PIDNS
    return pidns_of(1) == INIT_PIDNS


def locate(p: Proc) -> tuple[int | None, bool]:
    """(PID as our /proc shows it, or None; certain). certain=False: we cannot see the PID
    namespace the process lives in, so we cannot say it is gone (treat it as alive)."""
    mine = me()
    if p.pidns is not None and p.pidns == mine.pidns and len(nspids("self")) == 1:
        # the same namespace, and /proc is ours: its PID here is its own PID
        here = start_ticks(p.pid)
        if here is None or (p.start is not None and here != p.start):
            return None, True
        return p.pid, True
    # another namespace: search what our /proc shows (each process's NSpid ends with its own
    # PID). Complete only if our /proc shows every process (initial namespace) or the owner's
    # namespace is visible here (one of its processes shows up).
    seen_ns = False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None, False
    for e in entries:
        if not e.isdigit():
            continue
        ns = pidns_of(e)
        if p.pidns is not None and ns == p.pidns:
            seen_ns = True
        if ns != p.pidns and p.pidns is not None:
            continue
        chain = nspids(e)
        if chain and chain[-1] == p.pid and (p.start is None or start_ticks(e) == p.start):
            return int(e), True
    return None, (seen_ns or view_is_initial())


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists here (owned by anyone). See `locate` for
    deciding whether a particular process (not a number) still lives."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_number_dead(pid: int) -> bool:
    """For a resource named only by a PID number (left by an older ksight, or made in another
    mount namespace): True only when we can see every process and none has that PID in its
    own namespace. Anything else might be the owner: False."""
    if not view_is_initial():
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for e in entries:
        if e.isdigit():
            ns = nspids(e)
            if (ns and ns[-1] == pid) or int(e) == pid:
                return False
    return True


# --- children that die with ksight --------------------------------------------------------------
def die_with_parent() -> None:
    """preexec_fn: in the child before exec, ask the kernel to SIGKILL it when the thread that
    started it dies (PR_SET_PDEATHSIG), and check the parent did not die meanwhile."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def sleep_argv(seconds: float) -> list[str]:
    """A bounded `sleep` that also dies with its parent (perf's workload: if perf is killed,
    the sleep goes too). Uses util-linux setpriv when present, else the plain bounded sleep."""
    import shutil

    s = f"{max(0.1, float(seconds)):.3f}"
    if shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "KILL", "--", "sleep", s]
    return ["sleep", s]


def kill_and_wait(procs: Iterable[subprocess.Popen], timeout: float = 5.0) -> None:
    """SIGKILL every still-running process we started, then reap them (bounded wait each)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass


def kill_recorded(p: Proc) -> str:
    """SIGKILL a process a dead ksight recorded, if (and only if) it is still that process.
    Returns what happened, for people."""
    here, certain = locate(p)
    if here is None:
        return "gone" if certain else "unknown (another PID namespace)"
    if is_zombie(here):
        return "gone"
    try:
        os.kill(here, signal.SIGKILL)
    except ProcessLookupError:
        return "gone"
    import time

    deadline = time.monotonic() + 10.0   # a SIGKILLed bpftrace may take a while to release BPF
    while time.monotonic() < deadline:
        if start_ticks(here) != p.start or is_zombie(here):
            return "killed"
        time.sleep(0.02)
    return "SIGKILLed, but still exiting after 10 s (the next command checks again)"


# --- the registry -------------------------------------------------------------------------------
class Record:
    """This process's record in STATE_DIR: what it made, so a later ksight can undo it if this
    process dies. Entries are dicts with a "kind" (instance, mount, tracefs, child, dir, lab)."""

    def __init__(self, state_dir: str = STATE_DIR):
        self.state_dir = state_dir
        self.owner = me()
        self.path = os.path.join(state_dir, f"{os.getpid()}-{secrets.token_hex(4)}.json")
        self.entries: list[dict] = []
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._n = 0
        self.disabled = False

    def _write(self) -> None:
        doc = {"owner": self.owner.jsonable(), "entries": self.entries}
        data = json.dumps(doc).encode()
        for _ in range(5):
            try:
                os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
                tmp = f"{self.path}.{secrets.token_hex(3)}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                             0o600)
            except FileNotFoundError:
                continue  # a cleaner removed the empty directory just now: make it again
            except OSError:
                self.disabled = True   # not root, read-only /run: nothing can be recorded
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, data)
                os.rename(tmp, self.path)
            except OSError:
                os.close(fd)
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                continue
            old, self._fd = self._fd, fd
            if old is not None:
                os.close(old)
            return

    def add(self, kind: str, **fields) -> int:
        with self._lock:
            self._n += 1
            self.entries.append({"id": self._n, "kind": kind, **fields})
            self._write()
            return self._n

    def remove(self, eid: int) -> None:
        with self._lock:
            self.entries = [e for e in self.entries if e["id"] != eid]
            self._sync()

    def _sync(self) -> None:
        if self.entries:
            self._write()
            return
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
            try:
                os.rmdir(self.state_dir)   # the next command's check is one stat again
            except OSError:
                pass


_record: Record | None = None
_record_lock = threading.Lock()


def record() -> Record:
    """This process's registry record (made on first use)."""
    global _record
    with _record_lock:
        if _record is None or _record.owner.pid != os.getpid():   # a fork gets its own
            _record = Record()
        return _record


def register(kind: str, **fields) -> int:
    return record().add(kind, **fields)


def unregister(eid: int | None) -> None:
    if eid is not None:
        record().remove(eid)


def register_child(p: subprocess.Popen, what: str) -> int:
    d = describe(p.pid)
    proc = d if d is not None else Proc(p.pid, None, me().pidns, p.pid)
    return register("child", what=what, proc=proc.jsonable())


@dataclass
class Dead:
    """A record whose owner is proven dead, locked by us while we clean it."""
    path: str
    owner: Proc
    entries: list[dict]
    fd: int

    def keep_only(self, entries: list[dict]) -> None:
        """Rewrite the record with what could not be undone yet (the next command retries),
        or remove it when nothing is left."""
        if entries:
            doc = {"owner": self.owner.jsonable(), "entries": entries}
            tmp = self.path + ".keep.tmp"
            with open(tmp, "w") as f:
                json.dump(doc, f)
            os.rename(tmp, self.path)
        else:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        os.close(self.fd)


def records(state_dir: str = STATE_DIR) -> tuple[list[Dead], list[dict]]:
    """(records of dead owners, locked by us until .close(); entries of live owners)."""
    dead, live = [], []
    try:
        names = os.listdir(state_dir)
    except OSError:
        return dead, live
    mine = _record.path if _record is not None else None
    for n in sorted(names):
        path = os.path.join(state_dir, n)
        if n.endswith(".tmp"):
            _remove_torn_tmp(path)
            continue
        if not n.endswith(".json"):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            doc = json.loads(_read_fd(fd))
            entries = list(doc.get("entries", []))
            owner = Proc.of(doc["owner"])
        except (ValueError, KeyError, TypeError, OSError):
            os.close(fd)
            continue
        if path == mine:
            live += entries
            os.close(fd)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live += entries      # its owner holds the lock: alive
            os.close(fd)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if not same:              # replaced while we looked: its owner is alive and writing
            os.close(fd)
            live += entries
            continue
        dead.append(Dead(path, owner, entries, fd))
    return dead, live


def _read_fd(fd: int) -> str:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
        if sum(map(len, chunks)) > 1 << 20:
            raise ValueError("record too large")
    return b"".join(chunks).decode()


def _remove_torn_tmp(path: str) -> None:
    """A temp record a writer was killed while writing: remove it if nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def live_entries(kind: str | None = None) -> list[dict]:
    """Entries held by live owners (this process included), optionally of one kind."""
    dead, live = records()
    for d in dead:
        d.close()
    return [e for e in live if kind is None or e.get("kind") == kind]


@dataclass
class Liveness:
    """Who holds what, read once: identifiers ("ident" of entries) of live and dead owners."""
    live: set
    dead: set

    @classmethod
    def now(cls) -> "Liveness":
        dead, live = records()
        d = set()
        for r in dead:
            d.update(e.get("ident") for e in r.entries if e.get("ident"))
            r.close()
        return cls({e.get("ident") for e in live if e.get("ident")}, d)

    def gone(self, pid: int, ident: str) -> bool:
        """May the resource `ident`, named after `pid`, be removed? Only when its owner is
        proven dead: a dead record lists it, or (unrecorded, e.g. an older ksight) no process
        anywhere has that PID. Alive, or unknown (another PID namespace): False."""
        if ident in self.live or pid == os.getpid():
            return False
        if ident in self.dead:
            return True
        return pid_number_dead(pid)


__all__ = ["Proc", "describe", "me", "locate", "pid_alive", "pid_number_dead", "die_with_parent",
           "sleep_argv", "kill_and_wait", "kill_recorded", "Record", "record", "register",
           "unregister", "register_child", "records", "Dead", "live_entries", "Liveness", "STATE_DIR"]
