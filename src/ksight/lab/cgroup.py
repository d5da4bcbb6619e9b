"""A throw-away memory cgroup for the fault lab (live machine only, needs root).

`MemoryCgroup` finds the memory controller the way the kernel exposes it:
- cgroup v2 when a cgroup2 mount lists `memory` in its cgroup.controllers (then '+memory' is
  enabled in the root's cgroup.subtree_control if it is not already);
- otherwise the cgroup v1 hierarchy whose mount options name `memory`.
Mounts are found by parsing /proc/self/mountinfo. This module is lab code: it touches the
live /sys/fs/cgroup directly on purpose (the read-only Root seam is for diagnosis, not for
making faults).

The group is `ksight-lab-<ourpid>-<name>` at the top of the hierarchy. Limits:

| argument       | v2                 | v1                                                     |
|----------------|--------------------|--------------------------------------------------------|
| max_bytes      | memory.max         | memory.limit_in_bytes                                  |
| high_bytes     | memory.high        | memory.soft_limit_in_bytes (v1 has no memory.high; the |
|                |                    | soft limit only steers global reclaim, it never throttles) |
| swap_max_bytes | memory.swap.max    | memory.memsw.limit_in_bytes = max_bytes + swap_max_bytes |

`close()` kills (SIGKILL, by PID) only the processes `spawn()` started, waits for them, moves
any other remaining member (added with add_pid) back to the top-level group, waits up to 2 s
for the group to empty and removes it. `cleanup_stale()` removes groups left by a lab run
whose process is gone.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time

from ..errors import Unavailable
from .. import pids
from ..pids import kill_and_wait, pid_alive

PREFIX = "ksight-lab-"
_STALE = re.compile(r"^ksight-lab-(\d+)-")
def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def find_memory_controller(mountinfo_text: str | None = None) -> tuple[int, str, str]:
    """(version, mountpoint, mount root as /proc/PID/cgroup shows it), or raise Unavailable."""
    from ..sources import mounts as mounts_src

    ms = mounts_src.live() if mountinfo_text is None else mounts_src.parse(mountinfo_text)
    for m in ms.entries:
        if m.fstype == "cgroup2":
            try:
                ctrls = _read(os.path.join(m.mount_point, "cgroup.controllers")).split()
            except OSError:
                continue
            if "memory" in ctrls:
                return 2, m.mount_point, m.root or "/"
    for m in ms.entries:
        if m.fstype == "cgroup" and "memory" in m.super_options:
            return 1, m.mount_point, m.root or "/"
    raise Unavailable("memory cgroup", "no memory controller mounted (neither cgroup v2 nor v1)")


def _procs_file(version: int) -> str:
    return "cgroup.procs"


def _members(fs_path: str) -> list[int]:
    try:
        return [int(x) for x in _read(os.path.join(fs_path, "cgroup.procs")).split()]
    except OSError:
        return []


def _rmdir_when_empty(fs_path: str, parent_fs: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(fs_path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
        # move strays (processes added with add_pid that still live) back to the top group
        for pid in _members(fs_path):
            try:
                with open(os.path.join(parent_fs, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except OSError:
                pass
        time.sleep(0.02)


class MemoryCgroup:
    """A memory cgroup that exists for the `with` block. See the module doc."""

    def __init__(self, name: str = "x", *, max_bytes: int | None = None,
                 high_bytes: int | None = None, swap_max_bytes: int | None = None):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"cgroup name {name!r}: use letters, digits, '_', '.', '-'")
        self.version, self.mount, mount_root = find_memory_controller()
        self.name = f"{PREFIX}{os.getpid()}-{name}"
        self.fs_path = os.path.join(self.mount, self.name)
        self.path = mount_root.rstrip("/") + "/" + self.name
        self.notes: list[str] = []
        self._spawned: list[subprocess.Popen] = []
        self._closed = False
        if self.version == 2:
            sc = os.path.join(self.mount, "cgroup.subtree_control")
            if "memory" not in _read(sc).split():
                with open(sc, "w") as f:
                    f.write("+memory")
        self._eid = pids.register("lab", ident="lab:" + self.fs_path)  # before it exists
        try:
            os.mkdir(self.fs_path)
        except BaseException:
            pids.unregister(self._eid)
            raise
        try:
            self._apply_limits(max_bytes, high_bytes, swap_max_bytes)
        except BaseException:
            self.close()
            raise

    def _apply_limits(self, max_bytes, high_bytes, swap_max_bytes) -> None:
        if self.version == 2:
            if max_bytes is not None:
                self.write("memory.max", max_bytes)
            if high_bytes is not None:
                self.write("memory.high", high_bytes)
            if swap_max_bytes is not None:
                self.write("memory.swap.max", swap_max_bytes)
            return
        if max_bytes is not None:
            self.write("memory.limit_in_bytes", max_bytes)
        if high_bytes is not None:
            self.write("memory.soft_limit_in_bytes", high_bytes)
            self.notes.append("cgroup v1 has no memory.high: set memory.soft_limit_in_bytes instead "
                              "(it steers global reclaim, it does not throttle)")
        if swap_max_bytes is not None:
            if max_bytes is None:
                raise ValueError("cgroup v1: swap_max_bytes needs max_bytes (memsw = memory + swap)")
            if not os.path.exists(os.path.join(self.fs_path, "memory.memsw.limit_in_bytes")):
                self.notes.append("memory.memsw.limit_in_bytes missing (swapaccount=0): swap not limited")
            else:
                self.write("memory.memsw.limit_in_bytes", max_bytes + swap_max_bytes)

    # -- files --------------------------------------------------------------------------
    def read(self, file: str) -> str:
        return _read(os.path.join(self.fs_path, file))

    def write(self, file: str, value) -> None:
        with open(os.path.join(self.fs_path, file), "w") as f:
            f.write(str(value))

    def stat(self) -> dict[str, int]:
        """memory.stat as a dict (both versions print 'name value' lines)."""
        out = {}
        for line in self.read("memory.stat").splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
        return out

    def members(self) -> list[int]:
        return _members(self.fs_path)

    # -- processes ----------------------------------------------------------------------
    def add_pid(self, pid: int) -> None:
        self.write(_procs_file(self.version), pid)

    def spawn(self, argv, **popen_kwargs) -> subprocess.Popen:
        procs = os.path.join(self.fs_path, _procs_file(self.version))
        user_pre = popen_kwargs.pop("preexec_fn", None)

        def enter():
            # runs in the child between fork and exec: join the group before the program starts
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)
            pids.die_with_parent()   # a killed lab run takes its load with it
            if user_pre:
                user_pre()

        p = subprocess.Popen(argv, preexec_fn=enter, **popen_kwargs)
        self._spawned.append(p)
        return p

    # -- lifetime -----------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        kill_and_wait(self._spawned)
        for p in self._spawned:
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        if os.path.isdir(self.fs_path):
            _rmdir_when_empty(self.fs_path, self.mount)
        pids.unregister(self._eid)

    def __enter__(self) -> "MemoryCgroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryCgroup(v{self.version}, {self.fs_path})"


def list_lab_groups() -> list[str]:
    """Absolute paths of every ksight-lab-* memory cgroup at the top of the hierarchy."""
    try:
        _, mount, _ = find_memory_controller()
    except (Unavailable, OSError):
        return []
    try:
        names = os.listdir(mount)
    except OSError:
        return []
    return [os.path.join(mount, n) for n in sorted(names) if n.startswith(PREFIX)]


def cleanup_stale(live=None) -> list[str]:
    """Remove ksight-lab-* groups whose creator is proven dead (ksight.pids.Liveness).

    Processes still inside such a group were started by that dead lab run; they are killed by
    PID (read from the group's cgroup.procs) so the group can go. Returns the removed paths."""
    removed = []
    live = live or pids.Liveness.now()
    for path in list_lab_groups():
        m = _STALE.match(os.path.basename(path))
        if not m or not live.gone(int(m.group(1)), "lab:" + path):
            continue
        for pid in _members(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _rmdir_when_empty(path, os.path.dirname(path))
            removed.append(path)
        except OSError:
            pass
    return removed


__all__ = ["MemoryCgroup", "cleanup_stale", "find_memory_controller", "list_lab_groups",
           "pid_alive"]
