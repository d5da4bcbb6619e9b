"""A small throw-away filesystem on a loop device, and a write throttle on that device only
(live machine only, needs root; lab code touches /sys and /dev directly on purpose).

    with LoopFs(512 << 20, name="dirty") as fs, WriteThrottle(fs.majmin, 8 << 20) as th:
        th.spawn(argv_that_writes_into(fs.mountpoint))

`LoopFs` makes a sparse backing file `img` in a private directory
`/var/tmp/ksight-lab-<pid>-<name>-*`, attaches it with `losetup --find --show --direct-io=on`
(direct I/O: the loop device's own writes to the backing file do not go through the page cache
a second time), runs `mkfs.ext4 -q` on it (no journal, inode tables written at once: no jbd2 or
ext4lazyinit traffic on the device later) and mounts it on `<dir>/mnt`. `close()` unmounts
(lazily if busy), detaches the loop device and deletes the directory.

`WriteThrottle(majmin, bps)` limits writes to that one device with the kernel's block throttle
(CONFIG_BLK_DEV_THROTTLING), whichever way this machine offers it:
- cgroup v1 blkio: "MAJ:MIN BPS" in the ROOT group's blkio.throttle.write_bps_device. On v1,
  buffered writeback is issued by flusher kworkers in the root blkio group, so this is what
  slows writeback; a rule names one device, so nothing else on the machine is affected.
  `close()` writes "MAJ:MIN 0" (which deletes the rule).
- cgroup v2 with the io controller: the v2 root has no io.max, and cgroup writeback charges
  buffered writeback to the cgroup of the process that dirtied the pages; so a child group
  `ksight-lab-<pid>-<name>` gets io.max "MAJ:MIN wbps=BPS" and the writer must be started with
  `spawn()` (it joins the group before exec). `close()` kills what it spawned, removes the group.
`detect_throttle()` says which, or raises Unavailable with the reason.

`cleanup_stale()` undoes what a killed run left: loop devices whose backing file lies in a
`ksight-lab-<pid>-*` directory of a dead pid (throttle rule removed, unmounted, detached).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from ..errors import Unavailable
from .. import pids
from ..pids import kill_and_wait

WORK_BASE = "/var/tmp"
PREFIX = "ksight-lab-"
_STALE = re.compile(r"^ksight-lab-(\d+)-")
SYS_BLOCK = "/sys/block"
TOOLS = ("losetup", "mkfs.ext4", "mount", "umount")


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def mounts():
    """This process's mounts (ksight.sources.mounts.Mount entries)."""
    from ..sources.mounts import live

    return live().entries


def tools_missing() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


# ------------------------------------------------------------------------------------------
# loop devices
def loop_devices() -> dict[str, str]:
    """{'/dev/loopN': backing file} for every attached loop device (from /sys/block)."""
    out = {}
    try:
        names = os.listdir(SYS_BLOCK)
    except OSError:
        return out
    for n in names:
        if not n.startswith("loop"):
            continue
        try:
            bf = _read(os.path.join(SYS_BLOCK, n, "loop", "backing_file")).strip()
        except OSError:
            continue  # not attached
        out["/dev/" + n] = bf
    return out


def _majmin(dev: str) -> str:
    return _read(os.path.join(SYS_BLOCK, os.path.basename(dev), "dev")).strip()


def _umount(mountpoint: str) -> str | None:
    """Unmount; lazily if busy. Returns an error text or None."""
    r = _run(["umount", mountpoint], timeout=120)
    if r.returncode == 0:
        return None
    r2 = _run(["umount", "-l", mountpoint], timeout=30)
    if r2.returncode == 0:
        return None
    return f"umount {mountpoint}: {r.stderr.strip() or r2.stderr.strip()}"


def _detach(dev: str) -> str | None:
    r = _run(["losetup", "-d", dev], timeout=30)
    if r.returncode == 0 or not os.path.exists(os.path.join(SYS_BLOCK, os.path.basename(dev), "loop")):
        return None
    return f"losetup -d {dev}: {r.stderr.strip()}"


def _attach(backing: str, what: str) -> str:
    """losetup --find --show --direct-io=on BACKING -> /dev/loopN, or raise Unavailable."""
    r = _run(["losetup", "--find", "--show", "--direct-io=on", backing])
    dev = r.stdout.strip()
    if r.returncode != 0 or not dev.startswith("/dev/"):
        # a half attach (device found, dio refused) still shows up in /sys: detach it
        for d, bf in loop_devices().items():
            if bf == backing:
                _detach(d)
        raise Unavailable(what, f"losetup failed: {r.stderr.strip() or r.returncode}")
    return dev


def _dio(dev: str) -> bool:
    try:
        return _read(os.path.join(SYS_BLOCK, os.path.basename(dev), "loop", "dio")).strip() == "1"
    except OSError:
        return False


def _detach_all(backing: str, device: str | None, keep_mount: str | None = None) -> list[str]:
    """Detach `device` and any loop device attached to `backing` (an interrupted losetup may
    have attached one we never learnt), unmounting other mounts of them first. Errors as text."""
    errors = []
    devs = {d for d, bf in loop_devices().items() if bf.removesuffix(" (deleted)") == backing}
    if device:
        devs.add(device)
    for dev in sorted(devs):
        for m in mounts():
            if m.source == dev and m.mount_point != keep_mount:
                _umount(m.mount_point)
        err = _detach(dev)
        if err:
            errors.append(err)
    return errors


def _finish(d: str | None, errors: list[str], eid) -> None:
    """The end of a close(): delete the work directory, raise OSError listing what failed, or
    else drop the run record's entry (a failed clean-up stays recorded for the next command)."""
    if d:
        shutil.rmtree(d, ignore_errors=True)
        if os.path.exists(d):
            errors.append(f"{d} is still there")
    if errors:
        raise OSError("; ".join(errors))
    pids.unregister(eid)


class LoopFs:
    """An ext4 filesystem on a loop device over a sparse file; exists for the `with` block."""

    def __init__(self, size_bytes: int = 512 << 20, *, name: str = "loop", base: str = WORK_BASE):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"name {name!r}: use letters, digits, '_', '.', '-'")
        missing = tools_missing()
        if missing:
            raise Unavailable("loop filesystem", f"missing tools: {' '.join(missing)}")
        self.dir = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{name}-", dir=base)
        self._eid = pids.register("lab", ident="lab:" + self.dir)
        self.backing = os.path.join(self.dir, "img")
        self.mountpoint = os.path.join(self.dir, "mnt")
        self.device: str | None = None
        self.majmin: str | None = None
        self.dio = False
        self.mounted = False
        self._closed = False
        try:
            self._setup(size_bytes)
        except BaseException:
            self.close()
            raise

    def _setup(self, size_bytes: int) -> None:
        with open(self.backing, "wb") as f:
            f.truncate(size_bytes)  # sparse
        os.mkdir(self.mountpoint, 0o700)
        dev = self.device = _attach(self.backing, "loop filesystem")
        self.majmin = _majmin(dev)
        self.dio = _dio(dev)
        r = _run(["mkfs.ext4", "-q", "-O", "^has_journal",
                  "-E", "lazy_itable_init=0,lazy_journal_init=0", dev], timeout=120)
        if r.returncode != 0:
            raise Unavailable("loop filesystem", f"mkfs.ext4 failed: {r.stderr.strip()}")
        r = _run(["mount", "-t", "ext4", "-o", "noatime", dev, self.mountpoint])
        if r.returncode != 0:
            raise Unavailable("loop filesystem", f"mount failed: {r.stderr.strip()}")
        self.mounted = True

    def close(self) -> None:
        """Unmount (lazy if busy), detach, delete. Raises OSError listing what failed."""
        if self._closed:
            return
        self._closed = True
        errors = []
        if self.mounted or any(m.mount_point == self.mountpoint for m in mounts()):
            err = _umount(self.mountpoint)
            if err:
                errors.append(err)
            self.mounted = False
        errors += _detach_all(self.backing, self.device, self.mountpoint)
        _finish(self.dir, errors, self._eid)

    def __enter__(self) -> "LoopFs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LoopFs({self.device} {self.majmin} on {self.mountpoint})"


class LoopDev:
    """A loop device with no filesystem on it, for the `with` block: over a sparse file `img`
    in a private directory `/var/tmp/ksight-lab-<pid>-<name>-*` (reads of it are holes: no disk
    I/O), or, with `over=` another LoopDev, over that loop device (a stacked device: each of
    its requests is in flight, and counted busy in /proc/diskstats, until the lower device has
    served it; a throttle on the lower device makes the upper one a slow disk). Both attached
    with direct I/O. `close()` detaches (and deletes the directory it made).

    A killed run's devices are found from the directory's name (`stale_loops`): the one over
    the file, and the ones stacked on it, which are detached first."""

    def __init__(self, size_bytes: int = 64 << 20, *, name: str = "loop",
                 over: "LoopDev | None" = None, base: str = WORK_BASE):
        if over is None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"name {name!r}: use letters, digits, '_', '.', '-'")
        if shutil.which("losetup") is None:
            raise Unavailable("loop device", "missing tool: losetup")
        self.dir: str | None = None
        self._eid = None
        self.device: str | None = None
        self.majmin: str | None = None
        self.dio = False
        self._closed = False
        try:
            if over is None:
                self.dir = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{name}-", dir=base)
                self._eid = pids.register("lab", ident="lab:" + self.dir)
                self.backing = os.path.join(self.dir, "img")
                with open(self.backing, "wb") as f:
                    f.truncate(size_bytes)  # sparse
            else:
                if not over.device:
                    raise ValueError("over= a LoopDev that is attached")
                self.backing = over.device
            self.device = _attach(self.backing, "loop device")
            self.majmin = _majmin(self.device)
            self.dio = _dio(self.device)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Detach, delete. Raises OSError listing what failed."""
        if self._closed:
            return
        self._closed = True
        errors = _detach_all(self.backing, self.device) if hasattr(self, "backing") else []
        _finish(self.dir, errors, self._eid)

    def __enter__(self) -> "LoopDev":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LoopDev({self.device} {self.majmin} over {getattr(self, 'backing', None)})"


# ------------------------------------------------------------------------------------------
# block throttle
def detect_throttle() -> tuple[int, str]:
    """(1, root blkio dir) or (2, cgroup2 mountpoint); or raise Unavailable saying why not."""
    ms = mounts()
    for m in ms:
        if m.fstype == "cgroup" and "blkio" in m.super_options:
            if os.path.exists(os.path.join(m.mount_point, "blkio.throttle.write_bps_device")):
                return 1, m.mount_point
            raise Unavailable("block throttle", f"{m.mount_point} has no blkio.throttle.* "
                                                "(kernel without CONFIG_BLK_DEV_THROTTLING)")
    for m in ms:
        if m.fstype != "cgroup2":
            continue
        try:
            ctrls = _read(os.path.join(m.mount_point, "cgroup.controllers")).split()
        except OSError:
            continue
        if "io" in ctrls and "memory" in ctrls:  # cgroup writeback needs both
            return 2, m.mount_point
    raise Unavailable("block throttle", "neither a cgroup v1 blkio hierarchy nor cgroup v2 "
                                        "with the io and memory controllers is mounted")


# v1 rule files of the limits (root group); v2 keys of io.max
V1_FILES = {"rbps": "blkio.throttle.read_bps_device", "wbps": "blkio.throttle.write_bps_device",
            "riops": "blkio.throttle.read_iops_device", "wiops": "blkio.throttle.write_iops_device"}


class IoThrottle:
    """Reads and/or writes to one block device limited (bytes/s: rbps, wbps; requests/s:
    riops, wiops). v1: rules in the ROOT blkio group (v1 throttling is flat: a rule applies to
    the group's own I/O only, so `spawn()` starts its processes in the root group); v2: a child
    group with io.max, `spawn()` starts them in it. See the module doc."""

    def __init__(self, majmin: str, *, rbps: int = 0, wbps: int = 0, riops: int = 0,
                 wiops: int = 0, name: str = "io"):
        limits = {k: v for k, v in (("rbps", rbps), ("wbps", wbps), ("riops", riops),
                                     ("wiops", wiops)) if v}
        if (not re.fullmatch(r"\d+:\d+", majmin) or not limits
                or any(not isinstance(v, int) or v <= 0 for v in limits.values())):
            raise ValueError(f"bad throttle {majmin!r} {limits!r}")
        self.majmin, self.limits = majmin, limits
        self.version, self.mount = detect_throttle()
        self.group: str | None = None
        self.rule_files: list[str] = []
        self._spawned: list[subprocess.Popen] = []
        self._closed = False
        try:
            if self.version == 1:
                for k, v in limits.items():
                    rf = os.path.join(self.mount, V1_FILES[k])
                    self.rule_files.append(rf)
                    _write(rf, f"{majmin} {v}")
            else:
                sc = os.path.join(self.mount, "cgroup.subtree_control")
                on = _read(sc).split()
                for c in ("memory", "io"):
                    if c not in on:
                        _write(sc, "+" + c)
                self.group = os.path.join(self.mount, f"{PREFIX}{os.getpid()}-{name}")
                self._eid = pids.register("lab", ident="lab:" + self.group)
                os.mkdir(self.group)
                self.rule_files.append(os.path.join(self.group, "io.max"))
                _write(self.rule_files[0],
                       f"{majmin} " + " ".join(f"{k}={v}" for k, v in limits.items()))
        except BaseException:
            self.close()
            raise

    @property
    def rule_file(self) -> str:
        """The (first) file holding the rule."""
        return self.rule_files[0] if self.rule_files else os.path.join(
            self.mount, "io.max" if self.version == 2 else V1_FILES[next(iter(self.limits))])

    def rules(self) -> list[str]:
        """The lines of the rule files that name our device (empty once removed)."""
        out = []
        for rf in self.rule_files:
            try:
                text = _read(rf)
            except OSError:
                continue
            out += [ln for ln in text.splitlines() if ln.split()[:1] == [self.majmin]]
        return out

    def spawn(self, argv, **popen_kwargs) -> subprocess.Popen:
        """Start a process whose I/O (and, v2, writeback) is throttled: it joins the group
        before exec (v1: the root blkio group, which holds the rules)."""
        procs = os.path.join(self.group if self.version == 2 else self.mount, "cgroup.procs")
        v1 = self.version == 1

        def enter():
            try:
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, str(os.getpid()).encode())
                finally:
                    os.close(fd)
            except OSError:
                if not v1:  # v1: most likely in the root group already
                    raise
            pids.die_with_parent()

        p = subprocess.Popen(argv, preexec_fn=enter, **popen_kwargs)
        self._spawned.append(p)
        return p

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        kill_and_wait(self._spawned, timeout=10)
        if self.version == 1:
            for rf in self.rule_files:
                try:
                    if any(ln.split()[:1] == [self.majmin] for ln in _read(rf).splitlines()):
                        _write(rf, f"{self.majmin} 0")  # 0 deletes the rule
                except OSError:
                    pass
        elif self.group and os.path.isdir(self.group):
            try:
                _write(self.rule_files[0],
                       f"{self.majmin} " + " ".join(f"{k}=max" for k in self.limits))
            except (OSError, IndexError):
                pass
            deadline = time.monotonic() + 5
            while True:
                try:
                    os.rmdir(self.group)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        pids.unregister(getattr(self, "_eid", None))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        lim = " ".join(f"{k}={v}" for k, v in self.limits.items())
        return f"{type(self).__name__}(v{self.version} {self.majmin} {lim})"


class WriteThrottle(IoThrottle):
    """Writes to one block device limited to `bps` bytes/s (IoThrottle with wbps)."""

    def __init__(self, majmin: str, bps: int, *, name: str = "io"):
        if not isinstance(bps, int) or bps <= 0:
            raise ValueError(f"bad throttle {majmin!r} {bps!r}")
        self.bps = int(bps)
        super().__init__(majmin, wbps=self.bps, name=name)


# ------------------------------------------------------------------------------------------
def stale_loops(base: str = WORK_BASE, live=None) -> dict[str, str]:
    """{device: backing file} of loop devices a dead lab run left attached."""
    live = live or pids.Liveness.now()
    out = {}
    for dev, bf in loop_devices().items():
        path = bf.removesuffix(" (deleted)")
        parent = os.path.dirname(os.path.dirname(path))
        m = _STALE.match(os.path.basename(os.path.dirname(path)))
        if parent == base and m and live.gone(int(m.group(1)), "lab:" + os.path.dirname(path)):
            out[dev] = path
    # loop devices stacked on those (LoopDev over=): listed first, to be detached first
    over: dict[str, str] = {}
    for _ in range(8):
        more = {d: bf for d, bf in loop_devices().items()
                if (bf in out or bf in over) and d not in out and d not in over}
        if not more:
            break
        over = {**more, **over}
    return {**over, **out}


def cleanup_stale(base: str = WORK_BASE, live=None) -> list[str]:
    """Throttle rule off, unmount, detach every loop device of a dead lab run."""
    live = live or pids.Liveness.now()
    removed = []
    try:
        version, mount = detect_throttle()
    except (Unavailable, OSError):
        version, mount = 0, ""
    for dev, path in stale_loops(base, live).items():
        try:
            mm = _majmin(dev)
        except OSError:
            mm = None
        if version == 1 and mm:
            for f in V1_FILES.values():
                rf = os.path.join(mount, f)
                try:
                    if any(ln.split()[:1] == [mm] for ln in _read(rf).splitlines()):
                        _write(rf, f"{mm} 0")
                except OSError:
                    pass
        for m in mounts():
            if m.source == dev or (mm and m.devno == mm):
                _umount(m.mount_point)
        if _detach(dev) is None:
            removed.append(f"{dev} ({path})")
    return removed


__all__ = ["LoopFs", "LoopDev", "IoThrottle", "WriteThrottle", "detect_throttle", "loop_devices", "mounts",
           "stale_loops", "cleanup_stale", "tools_missing"]
