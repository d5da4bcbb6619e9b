"""Memory cgroups (v2 and v1): limits, usage, statistics, events and pressure per group.

Which hierarchy is read:
- v2 when a `cgroup2` mount's cgroup.controllers lists `memory`;
- else v1 when a `cgroup` (v1) hierarchy is mounted with the `memory` option;
- else there is no memory cgroup controller and read() raises Unavailable.
Hybrid machines (systemd's "unified" layout: cgroup2 at /sys/fs/cgroup/unified without the
memory controller, v1 memory at /sys/fs/cgroup/memory) therefore use v1.

Groups are keyed by their path as /proc/PID/cgroup shows it: '/' for the root group,
'/system.slice/foo.service' below it. The walk goes through root.listdirs, depth-first, bounded to
MAX_DEPTH levels below the root group and MAX_GROUPS groups; `truncated` says when a bound was hit.
A group that disappears while being read is skipped. `read(root, files=...)` reads only the
files a plan asks for (collect.plan.Plan.cgroup_files; FILES_V2/FILES_V1 map each name to its
files); the fields of the others stay None. `read(root)` reads every file.

File -> field:
  v2: memory.current -> current_bytes, memory.{min,low,high,max} -> *_bytes,
      memory.swap.current/max -> swap_*_bytes, memory.stat, memory.events, memory.events.local,
      memory.pressure (PSI, parsed by sources.pressure.parse_resource).
  v1: memory.usage_in_bytes -> current_bytes and memory.limit_in_bytes -> max_bytes (the nearest
      v1 equivalents of memory.current and memory.max); min/low/high and swap_* have no v1 file
      and stay None (memory.memsw.* count memory+swap, so they go to memsw_* instead).
      memory.stat keeps its hierarchical total_* keys as printed. memory.oom_control gives
      oom_kill_disable, under_oom and oom_kill (oom_kill since 4.13).
  both: cgroup.procs -> nprocs.
Limits: the literal 'max' (v2) is UNLIMITED; v1 prints "unlimited" as a large number that
depends on the kernel and page size (9223372036854771712, 9223372036854775807,
18446744073709551615), so any limit >= 2**62 is UNLIMITED too. An absent file is None (the v2
root group has no memory.max, memory.current or memory.events).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ParseError, Unavailable
from ..fs import Root, norm
from . import mounts as _mounts
from ._text import fast_count_int_lines, fast_space_kv, numbered_lines, to_int

if TYPE_CHECKING:
    from .pressure import PsiResource

UNLIMITED = 2**63 - 1
_UNLIMITED_FLOOR = 2**62
MAX_DEPTH = 8
MAX_GROUPS = 5000
SOURCE = "memory cgroup"


@dataclass(frozen=True)
class MemCgroup:
    path: str  # as /proc/PID/cgroup shows it: '/', '/system.slice/foo.service'
    version: int
    current_bytes: int | None = None
    min_bytes: int | None = None
    low_bytes: int | None = None
    high_bytes: int | None = None
    max_bytes: int | None = None
    swap_current_bytes: int | None = None
    swap_max_bytes: int | None = None
    stat: dict[str, int] | None = None
    events: dict[str, int] | None = None
    events_local: dict[str, int] | None = None
    pressure: PsiResource | None = None  # v2 only
    nprocs: int | None = None
    # v1 only
    failcnt: int | None = None
    soft_limit_bytes: int | None = None
    max_usage_bytes: int | None = None
    memsw_failcnt: int | None = None
    memsw_usage_bytes: int | None = None  # memory + swap
    memsw_limit_bytes: int | None = None  # memory + swap
    oom_kill_disable: int | None = None
    under_oom: int | None = None
    oom_kill: int | None = None


@dataclass(frozen=True)
class CgroupMemory:
    version: int | None
    mount: str | None  # root-relative mount point of the hierarchy read ('sys/fs/cgroup/memory')
    groups: dict[str, MemCgroup]
    truncated: bool = False  # the walk stopped at MAX_DEPTH or MAX_GROUPS


# ---- pure parsers -------------------------------------------------------------------------

def parse_limit(text: str, path: str) -> int:
    """A limit file: 'max' or a byte count; 'max' and anything >= 2**62 become UNLIMITED."""
    v = text.strip()
    if v == "max":
        return UNLIMITED
    if not v or len(v.split()) != 1:
        raise ParseError(path, 1, text.strip() or None, "expected 'max' or a byte count")
    n = to_int(v, path, 1, v)
    return UNLIMITED if n >= _UNLIMITED_FLOOR else n


def parse_value(text: str, path: str) -> int:
    """A file holding one integer (memory.current, memory.failcnt, ...)."""
    v = text.strip()
    if not v or len(v.split()) != 1:
        raise ParseError(path, 1, v or None, "expected one integer")
    return to_int(v, path, 1, v)


def parse_stat(text: str, path: str) -> dict[str, int]:
    """memory.stat (v1 and v2): 'name value' lines."""
    out = fast_space_kv(text)  # the usual text in bulk; None sends it line by line
    return out if out is not None else _parse_stat_lines(text, path)


def _parse_stat_lines(text: str, path: str) -> dict[str, int]:
    """parse_stat line by line: the reference, and the ParseErrors."""
    out: dict[str, int] = {}
    for lineno, line in numbered_lines(text):
        toks = line.split()
        if len(toks) != 2:
            raise ParseError(path, lineno, line, "expected 'name value'")
        out[toks[0]] = to_int(toks[1], path, lineno, line)
    if not out:
        raise ParseError(path, None, None, "empty file")
    return out


def parse_events(text: str, path: str) -> dict[str, int]:
    """memory.events, memory.events.local, memory.oom_control: 'name value' lines."""
    return parse_stat(text, path)


def parse_procs(text: str, path: str) -> int:
    """cgroup.procs: one PID per line -> how many processes."""
    n = fast_count_int_lines(text)
    return n if n is not None else _parse_procs_lines(text, path)


def _parse_procs_lines(text: str, path: str) -> int:
    """parse_procs line by line: the reference, and the ParseErrors."""
    n = 0
    for lineno, line in numbered_lines(text):
        to_int(line.strip(), path, lineno, line)
        n += 1
    return n


# ---- finding the hierarchy ----------------------------------------------------------------

def find_hierarchy(root: Root, mnts: _mounts.Mounts) -> tuple[int | None, _mounts.Mount | None]:
    """(version, mount) of the memory controller's hierarchy, or (None, None)."""
    for m in mnts.by_fstype("cgroup2"):
        try:
            controllers = root.read_text(posixpath.join(m.rel, "cgroup.controllers")).split()
        except Unavailable:
            continue
        if "memory" in controllers:
            return 2, m
    for m in mnts.by_fstype("cgroup"):
        if "memory" in m.all_options:
            return 1, m
    return None, None


def _base_path(m: _mounts.Mount) -> str:
    """The cgroup path of the group at the mount point (mountinfo's root field)."""
    r = m.root
    if not r or not r.startswith("/") or ".." in r.split("/"):
        return "/"
    return r


# ---- reading ------------------------------------------------------------------------------

class _Gone(Exception):
    """The group directory vanished while it was being read."""


def _reader(root: Root, d: str):
    read_text = root.text_reader()  # live: a pre-joined open/read, same results and errors
    d = norm(d)
    prefix = d + "/" if d else ""

    def get(name: str, parser):
        path = prefix + name
        try:
            text = read_text(path)
        except Unavailable:
            return None
        return parser(text, path)
    return get


# plan name (collect.plan.CGROUP_FILES) -> the files read for it, per version. A file a plan
# does not ask for is not opened and its fields stay None.
FILES_V2 = {
    "current": ("memory.current",),
    "limits": ("memory.min", "memory.low", "memory.high", "memory.max"),
    "stat": ("memory.stat",),
    "events": ("memory.events",),
    "events_local": ("memory.events.local",),
    "pressure": ("memory.pressure",),
    "procs": ("cgroup.procs",),
    "swap": ("memory.swap.current", "memory.swap.max"),
    "oom": (),  # v2 counts OOMs in memory.events
}
FILES_V1 = {
    "current": ("memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.failcnt"),
    "limits": ("memory.limit_in_bytes", "memory.soft_limit_in_bytes"),
    "stat": ("memory.stat",),
    "events": (),
    "events_local": (),
    "pressure": (),
    "procs": ("cgroup.procs",),
    "swap": ("memory.memsw.usage_in_bytes", "memory.memsw.limit_in_bytes",
             "memory.memsw.failcnt"),
    "oom": ("memory.oom_control",),
}
FILES = tuple(FILES_V2)  # = collect.plan.CGROUP_FILES


def _wanted(files) -> frozenset | None:
    """The plan names as a set (None: every file); unknown names are a ValueError."""
    if files is None:
        return None
    files = frozenset(files)
    bad = files - set(FILES)
    if bad:
        raise ValueError(f"unknown memory cgroup files {sorted(bad)}; known: {', '.join(FILES)}")
    return files


def _read_v2(root: Root, d: str, cg: str, want: frozenset | None = None) -> MemCgroup:
    get = _reader(root, d)
    a = want is None
    pressure = None
    if a or "pressure" in want:
        ptext = None
        ppath = posixpath.join(d, "memory.pressure")
        try:
            ptext = root.read_text(ppath)
        except Unavailable:
            pass
        if ptext is not None and ptext.strip():
            from .pressure import parse_resource  # only v2 groups have PSI files

            pressure = parse_resource(ptext, ppath)
    lim = a or "limits" in want
    swap = a or "swap" in want
    return MemCgroup(
        path=cg, version=2,
        current_bytes=get("memory.current", parse_value) if a or "current" in want else None,
        min_bytes=get("memory.min", parse_limit) if lim else None,
        low_bytes=get("memory.low", parse_limit) if lim else None,
        high_bytes=get("memory.high", parse_limit) if lim else None,
        max_bytes=get("memory.max", parse_limit) if lim else None,
        swap_current_bytes=get("memory.swap.current", parse_value) if swap else None,
        swap_max_bytes=get("memory.swap.max", parse_limit) if swap else None,
        stat=get("memory.stat", parse_stat) if a or "stat" in want else None,
        events=get("memory.events", parse_events) if a or "events" in want else None,
        events_local=(get("memory.events.local", parse_events)
                      if a or "events_local" in want else None),
        pressure=pressure,
        nprocs=get("cgroup.procs", parse_procs) if a or "procs" in want else None,
    )


def _read_v1(root: Root, d: str, cg: str, want: frozenset | None = None) -> MemCgroup:
    get = _reader(root, d)
    a = want is None
    cur = a or "current" in want
    lim = a or "limits" in want
    swap = a or "swap" in want
    oom = (get("memory.oom_control", parse_events) if a or "oom" in want else None) or {}
    return MemCgroup(
        path=cg, version=1,
        # v1 usage ~ v2 memory.current, v1 limit ~ v2 memory.max
        current_bytes=get("memory.usage_in_bytes", parse_value) if cur else None,
        max_bytes=get("memory.limit_in_bytes", parse_limit) if lim else None,
        stat=get("memory.stat", parse_stat) if a or "stat" in want else None,
        nprocs=get("cgroup.procs", parse_procs) if a or "procs" in want else None,
        failcnt=get("memory.failcnt", parse_value) if cur else None,
        soft_limit_bytes=get("memory.soft_limit_in_bytes", parse_limit) if lim else None,
        max_usage_bytes=get("memory.max_usage_in_bytes", parse_value) if cur else None,
        memsw_failcnt=get("memory.memsw.failcnt", parse_value) if swap else None,
        memsw_usage_bytes=get("memory.memsw.usage_in_bytes", parse_value) if swap else None,
        memsw_limit_bytes=get("memory.memsw.limit_in_bytes", parse_limit) if swap else None,
        oom_kill_disable=oom.get("oom_kill_disable"),
        under_oom=oom.get("under_oom"),
        oom_kill=oom.get("oom_kill"),
    )


def _probe(want: frozenset | None):
    """A test of whether a read group may have vanished: a file that every live group has,
    among those asked for, read as absent. (Only then the walk asks whether the directory is
    still there: one isdir per vanished group, not per group.)"""
    if want is None or ("procs" in want and "stat" in want):
        return lambda g: g.nprocs is None or g.stat is None
    if "procs" in want:
        return lambda g: g.nprocs is None
    if "stat" in want:
        return lambda g: g.stat is None
    if "current" in want:
        return lambda g: g.current_bytes is None
    return lambda g: True  # nothing that every group has was asked for: always check


def read_hierarchy(root: Root, version: int, mount: _mounts.Mount, *,
                   max_depth: int = MAX_DEPTH, max_groups: int = MAX_GROUPS,
                   files=None) -> CgroupMemory:
    """Walk one memory hierarchy (see module doc for the bounds; `files`: see read)."""
    want = _wanted(files)
    read_group = _read_v2 if version == 2 else _read_v1
    maybe_gone = _probe(want)
    base = _base_path(mount)
    groups: dict[str, MemCgroup] = {}
    truncated = False
    stack: list[tuple[str, str, int]] = [(mount.rel, base, 0)]  # (dir, cgroup path, depth)
    while stack:
        d, cg, depth = stack.pop()
        if len(groups) >= max_groups:
            truncated = True
            break
        try:
            subdirs = root.listdirs(d)  # one directory read, no isdir per entry
        except Unavailable:
            if not groups:
                raise  # the hierarchy's own directory is unreadable
            continue  # removed while we walked
        g = read_group(root, d, cg, want)
        # a group removed mid-read has files that read as None: only then ask whether it is gone
        if groups and maybe_gone(g) and not root.isdir(d):
            continue
        groups[cg] = g
        if subdirs and depth >= max_depth:
            truncated = True
            continue
        for n in reversed(subdirs):  # reversed: pop() then visits them in sorted order
            stack.append((posixpath.join(d, n), posixpath.join(cg, n), depth + 1))
    return CgroupMemory(version=version, mount=mount.rel, groups=groups, truncated=truncated)


def read(root: Root, files=None) -> CgroupMemory:
    """Every memory cgroup. `files`: the plan names (collect.plan.CGROUP_FILES: "current",
    "limits", "stat", "events", "events_local", "pressure", "procs", "swap", "oom") of the files
    to read in each group (FILES_V2/FILES_V1 say which files each name stands for); None reads
    every file. The fields of a file not asked for are None, as for an absent file. Why: the walk
    costs a few open/read/close per file per group, and hosts run hundreds of groups."""
    want = _wanted(files)
    version, mount = find_hierarchy(root, _mounts.read(root))
    if version is None or mount is None:
        raise Unavailable(SOURCE, "no memory cgroup controller mounted")
    return read_hierarchy(root, version, mount, files=want)
