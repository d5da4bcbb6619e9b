"""Page cache faults, reproduced for real and bounded (see docs/lab.md).

- dirty-backlog: buffered writes faster than writeback, with the dirty limits lowered.
- cgroup-reclaim: a small memory cgroup whose member cycles a file bigger than its limit.
- drop-caches: someone writes to /proc/sys/vm/drop_caches every second.
- swap-io: a small swap file and a cgroup whose anon working set is bigger than its limit.
- inode-steal: many small cached files in a small memory cgroup; inode reclaim drops their cache.

Files live in a directory `ksight-lab-<pid>-<scenario>` under /var/tmp (a disk filesystem:
/tmp may be tmpfs, which has no writeback) and are removed afterwards. Load programs are tiny
Python scripts run with this interpreter; each stops by itself at the run's deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile

from ..errors import Unavailable
from . import register
from .scenario import Running, Scenario, python_worker, start_thread

MiB = 1 << 20
WORK_BASE = "/var/tmp"
_DIR = re.compile(r"^ksight-lab-(\d+)-")


# -- small live readers (the proof in tests uses ksight.sources; these feed the evidence line)
def _meminfo() -> dict[str, int]:
    """/proc/meminfo as {name: kB}, through the project's parser (for the live evidence line)."""
    from ..fs import LiveRoot
    from ..sources import meminfo

    return dict(meminfo.read(LiveRoot()).fields)


def _vmstat() -> dict[str, int]:
    from ..fs import LiveRoot
    from ..sources import vmstat

    return dict(vmstat.read(LiveRoot()).counters)


def _fstype(path: str) -> str:
    """Filesystem type of the mount holding `path`."""
    from ..sources.mounts import live

    m = live().containing(os.path.realpath(path))
    return m.fstype if m else "?"


def _disk_dir_ok() -> tuple[bool, str]:
    if not os.path.isdir(WORK_BASE):
        return False, f"{WORK_BASE} is missing"
    t = _fstype(WORK_BASE)
    if t in ("tmpfs", "ramfs", "overlay", "nfs", "nfs4", "fuse"):
        return False, f"{WORK_BASE} is on {t}: needs a local disk filesystem with writeback"
    return True, ""


def _workdir(run: Running, stack: contextlib.ExitStack) -> str:
    from .. import pids

    d = tempfile.mkdtemp(prefix=f"ksight-lab-{os.getpid()}-{run.scenario.name}-", dir=WORK_BASE)
    eid = pids.register("lab", ident="lab:" + d)

    def remove():
        shutil.rmtree(d, ignore_errors=True)
        if os.path.exists(d):
            raise OSError(f"{d} could not be deleted")
        pids.unregister(eid)

    stack.callback(remove)
    run.info["dir"] = d
    return d


def _fill_file(path: str, size: int) -> None:
    """A file of `size` bytes, written and synced (so it adds no dirty pages later)."""
    buf = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // MiB):
            os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)


def _memcg_available() -> tuple[bool, str]:
    from .cgroup import find_memory_controller

    try:
        find_memory_controller()
    except Unavailable as exc:
        return False, exc.reason
    return True, ""


# ------------------------------------------------------------------------------------------
# dirty-backlog
# Writeback is made genuinely slower than the writer, on a device of our own: a small ext4 on a
# loop device (direct I/O to a sparse file under /var/tmp) whose writes the block throttle caps
# at 8 MiB/s (cgroup v1: root blkio group, where the flusher kworkers issue writeback; v2: io.max
# of the writer's own group). The dirty limits are lowered to 32/16 MiB so the thresholds are
# reached at once; the writer dirties pages as fast as it can, Dirty+Writeback climbs to the
# freerun ceiling (thresh + bg_thresh)/2 = 24 MiB within a second and stays there: the writer
# sleeps in balance_dirty_pages. Only our device is slowed; nothing else on the machine waits.
DIRTY_WRITER = r"""
import os, sys, time
path, fsize, budget, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
buf = b"\xa5" * 65536
end = time.monotonic() + seconds
written = off = 0
while written < budget and time.monotonic() < end:
    os.pwrite(fd, buf, off)
    off = (off + 65536) % fsize
    written += 65536
"""


class DirtyBacklog(Scenario):
    name = "dirty-backlog"
    area = "pagecache"
    summary = "buffered writes outrun a slow device's writeback; writers are throttled at the dirty limit"
    expects = ("pagecache.dirty-backlog",)
    bounds = ("vm.dirty_bytes=32 MiB, vm.dirty_background_bytes=16 MiB (both restored); a 512 MiB "
              "sparse ext4 on a loop device whose writes are throttled to 8 MiB/s; one 64 MiB file "
              "rewritten, <= 256 MiB written")
    dirty_bytes = 32 * MiB
    dirty_background_bytes = 16 * MiB
    fs_bytes = 512 * MiB
    file_bytes = 64 * MiB
    write_bps = 8 * MiB
    write_budget = 256 * MiB

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        from . import blockdev

        missing = blockdev.tools_missing()
        if missing:
            return False, f"missing tools: {' '.join(missing)} (util-linux, mount, e2fsprogs)"
        if not os.path.exists("/dev/loop-control"):
            return False, "no /dev/loop-control (kernel without loop device support)"
        try:
            blockdev.detect_throttle()
        except Unavailable as exc:
            return False, exc.reason
        return _disk_dir_ok()

    def start(self, run, stack):
        from .blockdev import LoopFs, WriteThrottle
        from .sysctl import SysctlGuard

        # unwinds in reverse: writer killed, throttle removed (so the flush is fast), unmount,
        # detach, files deleted, sysctls restored
        guard = stack.enter_context(SysctlGuard())
        guard.set("vm.dirty_bytes", self.dirty_bytes)  # waits here while another run holds the lock
        guard.set("vm.dirty_background_bytes", self.dirty_background_bytes)
        run.waited_s = guard.waited_s
        run.info["sysctls_saved"] = guard.saved
        fs = stack.enter_context(LoopFs(self.fs_bytes, name=self.name, base=WORK_BASE))
        run.info.update(dir=fs.dir, loopfs=fs, device=fs.device, majmin=fs.majmin,
                        mountpoint=fs.mountpoint, backing=fs.backing, dio=fs.dio)
        th = stack.enter_context(WriteThrottle(fs.majmin, self.write_bps, name=self.name))
        run.info["throttle"] = th
        p = th.spawn(python_worker(DIRTY_WRITER, os.path.join(fs.mountpoint, "dirty"),
                                   self.file_bytes, self.write_budget, run.seconds))
        run.procs.append(p)
        run.info["pid"] = p.pid

    def evidence(self, run):
        v = _vmstat()
        page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
        dirty, wb = v["nr_dirty"] * page_kib / 1024, v["nr_writeback"] * page_kib / 1024
        th, bg = v["nr_dirty_threshold"] * page_kib / 1024, v["nr_dirty_background_threshold"] * page_kib / 1024
        return (f"Dirty {dirty:5.1f} MiB + Writeback {wb:5.1f} MiB = {dirty + wb:5.1f} MiB  "
                f"(freerun ceiling {(th + bg) / 2:.0f} MiB, threshold {th:.0f} MiB)  "
                f"{run.info.get('device')} writes capped at {self.write_bps // MiB} MiB/s")


# ------------------------------------------------------------------------------------------
# cgroup-reclaim
RECLAIM_WORKER = r"""
import os, sys, time
d, fsize, anon, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
path = os.path.join(d, "big")
end = time.monotonic() + seconds
hold = bytearray(anon)
for i in range(0, anon, 4096):
    hold[i] = 1
buf = b"\x5a" * (1 << 20)
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
for off in range(0, fsize, 1 << 20):
    os.pwrite(fd, buf, off)
    if time.monotonic() > end:
        break
while time.monotonic() < end:
    for off in range(0, fsize, 1 << 20):
        os.pread(fd, 1 << 20, off)
        if time.monotonic() > end:
            break
"""


class _InMemoryCgroup(Scenario):
    """A load process in its own small memory cgroup, working on files in a work directory."""

    limit_bytes = 64 * MiB

    def available(self):
        ok, why = super().available()
        if ok:
            ok, why = _memcg_available()
        return (ok, why) if not ok else _disk_dir_ok()

    def spawn_in_cgroup(self, run: Running, stack: contextlib.ExitStack, name: str, worker: str,
                        *args) -> str:
        """Make the work dir and the cgroup, start `worker` inside; returns the work dir.
        The worker's argv gets the work dir as its first argument."""
        from .cgroup import MemoryCgroup

        d = _workdir(run, stack)
        cg = stack.enter_context(MemoryCgroup(name, max_bytes=self.limit_bytes))
        run.info["cgroup"] = cg
        p = cg.spawn(python_worker(worker, d, *args))
        run.info["pid"] = p.pid
        return d


class CgroupReclaim(_InMemoryCgroup):
    name = "cgroup-reclaim"
    area = "pagecache"
    summary = "a memory cgroup at its limit reclaims its own page cache synchronously"
    expects = ("pagecache.direct-reclaim",)
    bounds = "memory cgroup limited to 64 MiB, 32 MiB anon + one 192 MiB file written once and re-read"
    limit_bytes = 64 * MiB
    anon_bytes = 32 * MiB
    file_bytes = 192 * MiB


    def start(self, run, stack):
        self.spawn_in_cgroup(run, stack, "reclaim", RECLAIM_WORKER, self.file_bytes,
                             self.anon_bytes, run.seconds)

    def evidence(self, run):
        cg = run.info["cgroup"]
        st = cg.stat()
        if cg.version == 1:
            return (f"usage {int(cg.read('memory.usage_in_bytes')) / MiB:5.1f} MiB of "
                    f"{self.limit_bytes // MiB} MiB  failcnt {cg.read('memory.failcnt').strip()}  "
                    f"pgpgout {st.get('pgpgout', 0)}  cache {st.get('cache', 0) / MiB:.1f} MiB")
        ev = dict(line.split() for line in cg.read("memory.events").splitlines())
        return (f"usage {int(cg.read('memory.current')) / MiB:5.1f} MiB of {self.limit_bytes // MiB} MiB  "
                f"events max {ev.get('max')}  pgscan {st.get('pgscan', 0)}  pgsteal {st.get('pgsteal', 0)}")


# ------------------------------------------------------------------------------------------
# inode-steal
INODE_WORKER = r"""
import os, sys, time
d, nfiles, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + seconds
page = b"\x5a" * 4096
for i in range(nfiles):
    with open(f"{d}/f{i}", "wb") as f:
        f.write(page)
    if time.monotonic() > end:
        break
while time.monotonic() < end:
    for i in range(nfiles):
        try:
            with open(f"{d}/f{i}", "rb") as f:
                f.read()
        except FileNotFoundError:
            pass
        if time.monotonic() > end:
            break
"""


class InodeSteal(_InMemoryCgroup):
    """Many small cached files in a small memory cgroup: its reclaim shrinks the inode cache,
    and every inode it frees takes its page cache with it (vmstat pginodesteal)."""

    name = "inode-steal"
    area = "pagecache"
    summary = "reclaiming inodes of many small cached files throws their page cache away"
    expects = ("pagecache.inode-steal",)
    bounds = "memory cgroup limited to 48 MiB, 40,000 files of 4 KiB (160 MiB on disk) read in turn"
    limit_bytes = 48 * MiB
    nfiles = 40_000
    warmup_s = 3.0  # creating the files comes first


    def start(self, run, stack):
        run.info["vmstat0"] = _vmstat()
        self.spawn_in_cgroup(run, stack, "inodes", INODE_WORKER, self.nfiles, run.seconds)

    def evidence(self, run):
        v, v0 = _vmstat(), run.info.get("vmstat0", {})
        return (f"pginodesteal +{v.get('pginodesteal', 0) - v0.get('pginodesteal', 0)}  "
                f"kswapd_inodesteal +{v.get('kswapd_inodesteal', 0) - v0.get('kswapd_inodesteal', 0)}  "
                f"slabs_scanned +{v.get('slabs_scanned', 0) - v0.get('slabs_scanned', 0)}")


# ------------------------------------------------------------------------------------------
# drop-caches
class DropCaches(Scenario):
    name = "drop-caches"
    area = "pagecache"
    summary = "something drops the page cache (and slab) every second, so reads go to disk again"
    expects = ("pagecache.drop-caches",)
    bounds = "writes 1 (every 3rd time 2) to vm.drop_caches once a second; one 64 MiB file re-read"
    file_bytes = 64 * MiB
    period_s = 1.0

    def available(self):
        ok, why = super().available()
        return (ok, why) if not ok else _disk_dir_ok()

    def start(self, run, stack):
        d = _workdir(run, stack)
        path = os.path.join(d, "cached")
        _fill_file(path, self.file_bytes)
        run.info["drops"] = 0
        t = start_thread(run, self._loop, run, path)
        stack.callback(t.join, 5)

    def _loop(self, run: Running, path: str) -> None:
        n = 0
        while not run.stop.is_set() and run.remaining() > 0:
            with open(path, "rb") as f:  # bring the file into the page cache
                while f.read(MiB) and not run.stop.is_set():
                    pass
            if run.stop.is_set():
                return
            n += 1
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("2" if n % 3 == 0 else "1")
            run.info["drops"] = n
            run.stop.wait(self.period_s)

    def evidence(self, run):
        v = _vmstat()
        m = _meminfo()
        return (f"drop_pagecache {v.get('drop_pagecache')}  drop_slab {v.get('drop_slab')}  "
                f"Cached {m['Cached'] / 1024:.0f} MiB  (drops so far {run.info.get('drops', 0)})")


# ------------------------------------------------------------------------------------------
# swap-io
SWAP_WORKER = r"""
import os, sys, time
size, seconds = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + seconds
a = bytearray(size)
chunk = os.urandom(1 << 20)  # incompressible, not same-filled: really goes to the swap device
for off in range(0, size, 1 << 20):
    a[off:off + (1 << 20)] = chunk
    if time.monotonic() > end:
        break
while time.monotonic() < end:
    for off in range(0, size, 4096):  # touch every page again: swap in, and push others out
        a[off] = (a[off] + 1) & 255
    time.sleep(0.05)
"""


def _swapon(path: str) -> None:
    r = subprocess.run(["swapon", "-p", "32767", path], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise Unavailable("swap-io", f"swapon failed: {r.stderr.strip() or r.returncode}")


def _swapoff(path: str) -> None:
    if path in _active_swaps():
        subprocess.run(["swapoff", path], capture_output=True, text=True, timeout=120)


def _active_swaps() -> list[str]:
    try:
        with open("/proc/swaps") as f:
            return [line.split()[0] for line in f.read().splitlines()[1:] if line.strip()]
    except OSError:
        return []


class SwapIO(Scenario):
    name = "swap-io"
    area = "pagecache"
    summary = "a cgroup whose anon working set exceeds its limit pages to swap and back"
    expects = ("pagecache.swap-io",)
    bounds = "256 MiB swap file (swapoff + deleted after), cgroup limited to 64 MiB, 128 MiB anon"
    swap_bytes = 256 * MiB
    limit_bytes = 64 * MiB
    anon_bytes = 128 * MiB
    warmup_s = 2.0

    def available(self):
        ok, why = super().available()
        if not ok:
            return ok, why
        if not os.path.exists("/proc/swaps"):
            return False, "no swap support (kernel without CONFIG_SWAP)"
        for tool in ("mkswap", "swapon", "swapoff"):
            if shutil.which(tool) is None:
                return False, f"`{tool}` missing (util-linux)"
        ok, why = _memcg_available()
        if not ok:
            return ok, why
        ok, why = _disk_dir_ok()
        if ok and _fstype(WORK_BASE) in ("btrfs", "zfs"):
            return False, f"{WORK_BASE} is on {_fstype(WORK_BASE)}: no plain swap files there"
        return ok, why

    def start(self, run, stack):
        from .cgroup import MemoryCgroup

        d = _workdir(run, stack)
        swap = os.path.join(d, "swapfile")
        _fill_file(swap, self.swap_bytes)
        r = subprocess.run(["mkswap", swap], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Unavailable("swap-io", f"mkswap failed: {r.stderr.strip()}")
        stack.callback(_swapoff, swap)  # registered before swapon: also undoes a half swapon
        _swapon(swap)
        run.info["swapfile"] = swap
        # v1: limit only memory (memsw stays unlimited); v2: memory.max, memory.swap.max stays max
        cg = stack.enter_context(MemoryCgroup("swap", max_bytes=self.limit_bytes))
        if cg.version == 1:
            cg.write("memory.swappiness", 100)
        run.info["cgroup"] = cg
        p = cg.spawn(python_worker(SWAP_WORKER, self.anon_bytes, run.seconds))
        run.info["pid"] = p.pid

    def evidence(self, run):
        v = _vmstat()
        used = "?"
        with open("/proc/swaps") as f:
            for line in f.read().splitlines()[1:]:
                parts = line.split()
                if parts and parts[0] == run.info.get("swapfile"):
                    used = f"{int(parts[3]) / 1024:.0f} MiB"
        return f"pswpout {v.get('pswpout')}  pswpin {v.get('pswpin')}  lab swap used {used}"


def cleanup_stale(live=None) -> list[str]:
    """Swap off and delete work directories left by a lab run whose owner is proven dead
    (ksight.pids.Liveness: its record's lock is free, or no process has its PID anywhere)."""
    from ..pids import Liveness

    live = live or Liveness.now()
    removed = []
    try:
        names = os.listdir(WORK_BASE)
    except OSError:
        return removed
    try:  # loop devices of dead runs first: unmount + detach before their directory goes
        from .blockdev import cleanup_stale as _stale_loops

        removed += _stale_loops(WORK_BASE, live)
    except (ImportError, OSError):
        pass
    for n in names:
        m = _DIR.match(n)
        d = os.path.join(WORK_BASE, n)
        if not m or not live.gone(int(m.group(1)), "lab:" + d):
            continue
        for s in _active_swaps():
            if s.startswith(d + "/"):
                _swapoff(s)
        _umount_below(d)  # a scenario's own tmpfs (memory area): rmtree cannot remove a mount
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _umount_below(d: str) -> None:
    """Unmount (lazily, deepest first) every mount at or below directory d of a dead run."""
    import subprocess

    from ..sources import mounts as _mounts

    try:
        points = [m.mount_point for m in _mounts.live().entries
                  if m.mount_point == d or m.mount_point.startswith(d + "/")]
    except Exception:  # no mount table: nothing we could unmount anyway
        return
    for mp in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)


for _sc in (DirtyBacklog(), CgroupReclaim(), InodeSteal(), DropCaches(), SwapIO()):
    register(_sc)

__all__ = ["DirtyBacklog", "CgroupReclaim", "InodeSteal", "DropCaches", "SwapIO", "cleanup_stale"]
