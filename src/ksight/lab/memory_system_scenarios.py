"""Memory held outside processes, reproduced for real and bounded (see docs/lab.md).

- shmem-tmpfs: files written to a tmpfs of our own, by a writer in its own memory cgroup that
  exits: Shmem grows and no process maps it (memory.shmem-growth, subject: the writer's cgroup).
- sysv-orphan: a SysV shared memory segment created, touched and detached: nattch 0
  (memory.shmem-growth, evidence: the segment's shmid and key).
- oom-cgroup: a memory cgroup with a small limit whose member starts children that allocate past
  it; the OOM killer kills each of them (memory.oom-kill, subject: the cgroup).
- slab-sockets: UDP sockets opened and held, a few thousand a second: the UDP slab cache
  (unreclaimable) grows (memory.slab-leak, evidence: the UDP cache).

Everything is bounded in size and time and undone on every exit path (the ExitStack of
Scenario.running): the tmpfs unmounted (lazily if busy) and its directory removed, the segment
removed (shmctl IPC_RMID, by the shmid we created), the load processes killed by PID, the
cgroups removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess

from . import register
from .pagecache_scenarios import MiB, WORK_BASE, _memcg_available, _meminfo, _workdir
from .scenario import Running, Scenario, python_worker

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class SysvSegment:
    """A SysV segment we create, touch and detach (nattch 0); removed on close()."""

    def __init__(self, size: int):
        libc = _libc()
        libc.shmget.restype = ctypes.c_int
        libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
        libc.shmat.restype = ctypes.c_void_p
        libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
        libc.shmdt.argtypes = (ctypes.c_void_p,)
        libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
        self._libc = libc
        self.size = size
        # a key that names us: 0x6b73 ('ks') and our PID's low 16 bits
        self.key = (0x6B73 << 16) | (os.getpid() & 0xFFFF)
        from .. import pids

        # recorded before it exists: if this run is killed, the next ksight command removes it
        self._eid = pids.register("lab", ident=f"lab:sysv:{self.key:#x}")
        self.shmid = libc.shmget(self.key, size, IPC_CREAT | 0o600)
        if self.shmid < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"shmget: {os.strerror(e)}")
        try:
            addr = libc.shmat(self.shmid, None, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                e = ctypes.get_errno()
                raise OSError(e, f"shmat: {os.strerror(e)}")
            ctypes.memset(addr, 0x5A, size)  # touch every page: rss = size
            libc.shmdt(ctypes.c_void_p(addr))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.shmid >= 0:
            self._libc.shmctl(self.shmid, IPC_RMID, None)
            self.shmid = -1
        from .. import pids

        pids.unregister(getattr(self, "_eid", None))
        self._eid = None


def _segment_exists(shmid: int) -> bool:
    try:
        with open("/proc/sysvipc/shm") as f:
            return any(line.split()[1] == str(shmid) for line in f.read().splitlines()[1:] if line.strip())
    except OSError:
        return False


# ------------------------------------------------------------------------------------------
# shmem-tmpfs
TMPFS_WRITER = r"""
import os, sys, time
d, total, chunk, period, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
end = time.monotonic() + seconds
buf = b"\x5a" * chunk
n = 0
while n * chunk < total and time.monotonic() < end:
    with open(os.path.join(d, f"f{n}"), "wb") as f:
        f.write(buf)
    n += 1
    time.sleep(period)
"""


def _umount(path: str) -> None:
    if os.path.ismount(path):
        r = subprocess.run(["umount", path], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True, text=True, timeout=30)
    with contextlib.suppress(OSError):
        os.rmdir(path)


class ShmemTmpfs(Scenario):
    name = "shmem-tmpfs"
    area = "memory"
    summary = "files written to a tmpfs and kept: Shmem grows and no process maps it"
    expects = ("memory.shmem-growth",)
    bounds = ("a tmpfs of size=192 MiB of our own (unmounted after), 160 MiB written at "
              "16 MiB/s by a writer in its own memory cgroup, then the files just sit there")
    tmpfs_bytes = 192 * MiB
    total_bytes = 160 * MiB
    chunk_bytes = 4 * MiB
    period_s = 0.25

    def available(self):
        ok, why = super().available()
        if ok:
            ok, why = _memcg_available()
        if ok and not os.path.isdir(WORK_BASE):
            return False, f"{WORK_BASE} is missing"
        return ok, why

    def start(self, run, stack):
        from .cgroup import MemoryCgroup

        d = _workdir(run, stack)
        mnt = os.path.join(d, "tmpfs")
        os.mkdir(mnt)
        stack.callback(_umount, mnt)  # before the mount: also undoes a half mount
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.tmpfs_bytes},mode=0700",
                            "ksight-lab", mnt], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise OSError(f"mount tmpfs failed: {r.stderr.strip() or r.returncode}")
        run.info["mountpoint"] = mnt
        cg = stack.enter_context(MemoryCgroup("tmpfs"))
        run.info["cgroup"] = cg
        p = cg.spawn(python_worker(TMPFS_WRITER, mnt, self.total_bytes, self.chunk_bytes,
                                   self.period_s, run.seconds))
        run.procs.append(p)
        run.info["pid"] = p.pid

    def evidence(self, run):
        st = os.statvfs(run.info["mountpoint"])
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        return (f"tmpfs {run.info['mountpoint']} used {used / MiB:5.1f} MiB  "
                f"Shmem {_meminfo()['Shmem'] / 1024:6.1f} MiB")


# ------------------------------------------------------------------------------------------
# sysv-orphan
class SysvOrphan(Scenario):
    name = "sysv-orphan"
    area = "memory"
    summary = "a SysV shared memory segment created, filled and left with no process attached"
    expects = ("memory.shmem-growth",)
    bounds = "one 64 MiB segment (shmctl IPC_RMID after); no process"
    segment_bytes = 64 * MiB

    def available(self):
        ok, why = super().available()
        if ok and not os.path.exists("/proc/sysvipc/shm"):
            return False, "no /proc/sysvipc/shm (kernel without CONFIG_SYSVIPC)"
        return ok, why

    def start(self, run, stack):
        seg = SysvSegment(self.segment_bytes)
        stack.callback(seg.close)
        run.info.update(shmid=seg.shmid, key=seg.key, segment=seg)

    def evidence(self, run):
        return (f"segment shmid {run.info['shmid']} key {run.info['key']:#x} "
                f"{self.segment_bytes // MiB} MiB, nattch 0, exists: "
                f"{_segment_exists(run.info['shmid'])}")


# ------------------------------------------------------------------------------------------
# oom-cgroup
OOM_PARENT = r"""
import subprocess, sys, time
alloc, period, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
child = ("import sys\n"
         "open('/proc/self/oom_score_adj', 'w').write('1000')\n"
         "a = bytearray(%d)\n"
         "for i in range(0, len(a), 4096): a[i] = 1\n" % alloc)
end = time.monotonic() + seconds
while time.monotonic() < end:
    subprocess.run([sys.executable, "-I", "-S", "-c", child], stderr=subprocess.DEVNULL)
    time.sleep(period)
"""


class OomCgroup(Scenario):
    name = "oom-cgroup"
    area = "memory"
    summary = "children allocate past a small memory cgroup's limit and are OOM-killed"
    expects = ("memory.oom-kill",)
    bounds = ("memory cgroup limited to 48 MiB; a child allocates 96 MiB about once a second "
              "and is killed by the OOM killer inside the group (oom_score_adj 1000); the "
              "machine outside the group is untouched")
    limit_bytes = 48 * MiB
    alloc_bytes = 96 * MiB
    period_s = 0.5

    def available(self):
        ok, why = super().available()
        return (ok, why) if not ok else _memcg_available()

    def start(self, run, stack):
        from .cgroup import MemoryCgroup

        cg = stack.enter_context(MemoryCgroup("oom", max_bytes=self.limit_bytes))
        if cg.version == 1 and os.path.exists(os.path.join(cg.fs_path, "memory.memsw.limit_in_bytes")):
            with contextlib.suppress(OSError):  # no swap escape either: memory + swap = limit
                cg.write("memory.memsw.limit_in_bytes", self.limit_bytes)
        if cg.version == 2:
            with contextlib.suppress(OSError):
                cg.write("memory.swap.max", 0)
        run.info["cgroup"] = cg
        p = cg.spawn(python_worker(OOM_PARENT, self.alloc_bytes, self.period_s, run.seconds))
        run.procs.append(p)
        run.info["pid"] = p.pid

    def evidence(self, run):
        cg = run.info["cgroup"]
        if cg.version == 1:
            oc = dict(line.split() for line in cg.read("memory.oom_control").splitlines())
            return f"{cg.path}: oom_kill {oc.get('oom_kill')}  failcnt {cg.read('memory.failcnt').strip()}"
        ev = dict(line.split() for line in cg.read("memory.events").splitlines())
        return f"{cg.path}: oom_kill {ev.get('oom_kill')}  oom {ev.get('oom')}  max {ev.get('max')}"


# ------------------------------------------------------------------------------------------
# slab-sockets
SOCKET_HOLDER = r"""
import resource, socket, sys, time
n, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
end = time.monotonic() + seconds
t0 = time.monotonic()
held = []
while len(held) < n and time.monotonic() < end:
    due = int((time.monotonic() - t0) * rate) + 1
    while len(held) < min(due, n):
        held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    time.sleep(0.01)
while time.monotonic() < end:
    time.sleep(0.1)
"""


class SlabSockets(Scenario):
    name = "slab-sockets"
    area = "memory"
    summary = "UDP sockets opened and never closed: the UDP slab cache (unreclaimable) grows"
    expects = ("memory.slab-leak",)
    bounds = "at most 60,000 UDP sockets (about 3 KiB of kernel memory each, ~180 MiB), 6,000 a second, closed when the holder is killed"
    nsockets = 60_000
    rate = 6_000.0
    warmup_s = 0.5

    def start(self, run, stack):
        import resource

        # one holder per RLIMIT_NOFILE's worth of sockets (the hard limit may be low, and only
        # CAP_SYS_RESOURCE raises it), the rate split between them
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        per = self.nsockets if hard == resource.RLIM_INFINITY else max(1000, min(self.nsockets, hard - 64))
        k = -(-self.nsockets // per)
        for _ in range(k):
            p = subprocess.Popen(python_worker(SOCKET_HOLDER, per, self.rate / k, run.seconds),
                                 preexec_fn=_die_with_parent)
            run.procs.append(p)
        run.info["pid"] = run.procs[0].pid
        run.info["pids"] = [p.pid for p in run.procs]

    def evidence(self, run):
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith("UDP "):
                    t = line.split()
                    return f"UDP cache {int(t[1]):,} objects of {t[3]} B  SUnreclaim {_meminfo()['SUnreclaim'] / 1024:.1f} MiB"
        return "no UDP cache in /proc/slabinfo"


# bpf(2): BPF_MAP_CREATE of a BPF_MAP_TYPE_ARRAY, whose values the kernel allocates with
# vmalloc (kernel/bpf/arraymap.c array_map_alloc -> bpf_map_area_alloc, past a few pages); the
# map lives while a file descriptor holds it
SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
BPF_HOLDER = r"""
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class Attr(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("rest", ctypes.c_uint8 * 108)]
nr, value, entries, nmaps, period, seconds = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                              int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
start = time.monotonic()
end = start + seconds
fds = []
while time.monotonic() < end and len(fds) < nmaps:
    a = Attr(2, 4, value, entries, 0)   # BPF_MAP_TYPE_ARRAY, u32 keys
    fd = libc.syscall(nr, 0, ctypes.byref(a), ctypes.sizeof(a))   # BPF_MAP_CREATE
    if fd < 0:
        print("bpf map create failed: errno", ctypes.get_errno(), file=sys.stderr, flush=True)
        break
    fds.append(fd)                      # held: never closed until this process ends
    time.sleep(max(0.0, start + len(fds) * period - time.monotonic()))
while time.monotonic() < end:
    time.sleep(0.1)
"""


def _array_map_pages() -> int:
    """Pages vmalloc holds for BPF array maps (array_map_alloc), read from /proc/vmallocinfo."""
    n = 0
    with open("/proc/vmallocinfo") as f:
        for line in f:
            if " array_map_alloc+" in line:
                for tok in line.split():
                    if tok.startswith("pages="):
                        n += int(tok[6:])
    return n


class VmallocBpfMaps(Scenario):
    name = "vmalloc-bpf-maps"
    area = "memory"
    summary = ("a process creates 4 MiB BPF array maps (bpf(2) BPF_MAP_CREATE), 4 a second, and "
               "keeps their file descriptors: vmalloc grows, allocated by array_map_alloc")
    expects = ("memory.vmalloc-leak",)
    bounds = ("at most 48 maps of 4 MiB (192 MiB of vmalloc'ed kernel memory), 16 MiB/s; freed "
              "by the kernel when the holder is killed")
    value_bytes = 4096
    entries = 1024
    nmaps = 48
    period = 0.25
    warmup_s = 0.5

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        import platform

        nr = SYS_BPF.get(platform.machine())
        if nr is None:
            return False, f"no bpf(2) syscall number known for {platform.machine()}"
        if not os.path.exists("/proc/vmallocinfo"):
            return False, "/proc/vmallocinfo is missing (the caller could not be named)"
        # one tiny map, closed at once: bpf(2) works here (CONFIG_BPF_SYSCALL, not locked down)
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        attr = (ctypes.c_uint32 * 32)(2, 4, 4, 1)
        fd = libc.syscall(nr, 0, ctypes.byref(attr), 48)
        if fd < 0:
            return False, f"bpf(BPF_MAP_CREATE) fails here: {os.strerror(ctypes.get_errno())}"
        os.close(fd)
        return True, ""

    def start(self, run, stack):
        import platform

        run.info["pages_before"] = _array_map_pages()
        p = subprocess.Popen(python_worker(BPF_HOLDER, SYS_BPF[platform.machine()],
                                           self.value_bytes, self.entries, self.nmaps,
                                           self.period, run.seconds),
                             preexec_fn=_die_with_parent)
        run.procs.append(p)
        run.info["pid"] = p.pid

    def evidence(self, run):
        pages = _array_map_pages()
        return (f"array_map_alloc holds {pages * os.sysconf('SC_PAGE_SIZE') / MiB:.1f} MiB of "
                f"vmalloc (was {run.info['pages_before'] * os.sysconf('SC_PAGE_SIZE') / MiB:.1f}); "
                f"VmallocUsed {_meminfo()['VmallocUsed'] / 1024:.1f} MiB")


def _die_with_parent():
    from .. import pids

    pids.die_with_parent()


for _sc in (ShmemTmpfs(), SysvOrphan(), OomCgroup(), SlabSockets(), VmallocBpfMaps()):
    register(_sc)

__all__ = ["ShmemTmpfs", "SysvOrphan", "OomCgroup", "SlabSockets", "VmallocBpfMaps",
           "SysvSegment"]


LAB_KEY_PREFIX = 0x6B73  # 'ks': the high half of every key a lab segment is made with


def _lab_segments() -> list:
    from ..fs import LiveRoot
    from ..sources import sysvipc_shm

    try:
        return [s for s in sysvipc_shm.read(LiveRoot()).segments
                if (s.key >> 16) == LAB_KEY_PREFIX and s.nattch == 0]
    except Exception:  # no SysV IPC on this kernel, or the file is unreadable
        return []


def cleanup_stale(live=None) -> list[str]:
    """Remove SysV segments a killed lab run left: a lab key (0x6b73....), nobody attached, and
    its creator (cpid: the lab process that made it) proven dead (ksight.pids.Liveness)."""
    from ..pids import Liveness

    live = live or Liveness.now()
    out = []
    for s in _lab_segments():
        if not live.gone(s.cpid, f"lab:sysv:{s.key:#x}"):
            continue
        try:
            libc = _libc()
            libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
            if libc.shmctl(s.shmid, IPC_RMID, None) == 0:
                out.append(f"SysV segment shmid {s.shmid} (key {s.key:#x})")
        except OSError:
            continue
    return out


def leftover_segments(pid: int) -> list[str]:
    """The lab segments process `pid` created that still exist (for lab.leftovers)."""
    return [f"SysV segment shmid {s.shmid} (key {s.key:#x})" for s in _lab_segments() if s.cpid == pid]
