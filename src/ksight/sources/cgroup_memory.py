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
files); the fields of the others stay None; and unless the plan names "idle" it skips the groups
nothing can charge (no task in their subtree and a zero charge; "idle groups" below says why that
is safe), counting them in `skipped_idle`. `read(root)` reads every file of every group.
A plan name "NAME:limited" reads NAME's files only in groups with a memory limit of their own
(see LIMITED). On the live root the control files stay open between walks and are read again
with pread ("kept control files" below). Each group carries its id (MemCgroup.id: the inode
number of its directory, Root.dir_id; None in captures made before ksight recorded it), so a
group removed and made again under the same path is another entity, like a reused PID.

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

import _thread
import os
import posixpath
import resource
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import LiveRoot, Root, norm
from ..fs.root import DirFiles, _os_reason
from . import mounts as _mounts
from ._text import fast_count_int_lines, fast_space_kv, numbered_lines, to_int

from .pressure import PsiResource  # a real import: the sample codec resolves this annotation

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
    # the cgroup id: the inode number of the group's directory (cgroupfs is kernfs: cgroup_id() is
    # kernfs_ino), None where the root cannot say (captures made before ksight recorded it). A
    # group removed and made again under the same path has another id: another entity.
    id: int | None = None


@dataclass(frozen=True)
class CgroupMemory:
    version: int | None
    mount: str | None  # root-relative mount point of the hierarchy read ('sys/fs/cgroup/memory')
    groups: dict[str, MemCgroup]
    truncated: bool = False  # the walk stopped at MAX_DEPTH or MAX_GROUPS
    skipped_idle: int = 0  # groups not read: nothing could charge them (see read); counted, not dropped


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

def _parse_oom(text: str, path: str) -> dict[str, int]:
    return parse_stat(text, path)


def _parse_populated(text: str, path: str) -> int | None:
    """cgroup.events (v2): 'populated 0|1' and 'frozen 0|1' lines -> the populated flag."""
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == "populated":
            return to_int(v.strip(), path, None, line)
    return None


def _parse_pressure(text: str, path: str):
    if not text.strip():
        return None
    from .pressure import parse_resource  # only v2 groups have PSI files

    return parse_resource(text, path)


# plan name (collect.plan.CGROUP_FILES) -> the files read for it, per version, as
# (MemCgroup field, file, parser). A file a plan does not ask for is not opened and its fields stay
# None. v1's memory.oom_control fills three fields (see _OOM_FIELDS).
_SPEC_V2 = {
    "usage": (("current_bytes", "memory.current", parse_value),),
    "failcnt": (),  # v2 counts limit hits in memory.events(.local) max/high
    "peak": (),  # memory.peak (5.19+) has no field here
    "max": (("high_bytes", "memory.high", parse_limit), ("max_bytes", "memory.max", parse_limit)),
    "protection": (("min_bytes", "memory.min", parse_limit), ("low_bytes", "memory.low", parse_limit)),
    "stat": (("stat", "memory.stat", parse_stat),),
    "events": (("events", "memory.events", parse_events),),
    "events_local": (("events_local", "memory.events.local", parse_events),),
    "pressure": (("pressure", "memory.pressure", _parse_pressure),),
    "procs": (("nprocs", "cgroup.procs", parse_procs),),
    "swap": (("swap_current_bytes", "memory.swap.current", parse_value),
             ("swap_max_bytes", "memory.swap.max", parse_limit)),
    "oom": (),  # v2 counts OOMs in memory.events(.local)
    "idle": (),
}
_SPEC_V1 = {
    # v1 usage ~ v2 memory.current, v1 limit ~ v2 memory.max
    "usage": (("current_bytes", "memory.usage_in_bytes", parse_value),),
    "failcnt": (("failcnt", "memory.failcnt", parse_value),),
    "peak": (("max_usage_bytes", "memory.max_usage_in_bytes", parse_value),),
    "max": (("max_bytes", "memory.limit_in_bytes", parse_limit),),
    "protection": (("soft_limit_bytes", "memory.soft_limit_in_bytes", parse_limit),),
    "stat": (("stat", "memory.stat", parse_stat),),
    "events": (),
    "events_local": (),
    "pressure": (),
    "procs": (("nprocs", "cgroup.procs", parse_procs),),
    "swap": (("memsw_usage_bytes", "memory.memsw.usage_in_bytes", parse_value),
             ("memsw_limit_bytes", "memory.memsw.limit_in_bytes", parse_limit),
             ("memsw_failcnt", "memory.memsw.failcnt", parse_value)),
    "oom": (("oom", "memory.oom_control", _parse_oom),),
    "idle": (),
}
_OOM_FIELDS = ("oom_kill_disable", "under_oom", "oom_kill")
# names that stand for several: what plans said before the finer names, kept so they still work
ALIASES = {"current": ("usage", "failcnt", "peak"), "limits": ("max", "protection")}
FILES_V2 = {n: tuple(f for _fld, f, _p in s) for n, s in _SPEC_V2.items()}
FILES_V1 = {n: tuple(f for _fld, f, _p in s) for n, s in _SPEC_V1.items()}
for _a, _ns in ALIASES.items():
    FILES_V2[_a] = tuple(f for n in _ns for f in FILES_V2[n])
    FILES_V1[_a] = tuple(f for n in _ns for f in FILES_V1[n])
# "NAME:limited": the files of NAME only in groups with a memory limit of their own (v2
# memory.max or memory.high, v1 memory.limit_in_bytes, below unlimited); the limit files (the
# gate) are then read in every group. For rules whose counters
# can only move at a group's own limit (v1 failcnt counts the charges that failed at *this*
# group's limit: page_counter_try_charge; v2 memory.events.local max/high likewise) or that use
# a value only next to a limit (usage of limit, dirty headroom, peak at the limit). A group
# whose limit is set or removed inside the window has these fields in only some snapshots: no
# delta for those intervals, as for a group created in the window. NAME alone wins over
# NAME:limited when a plan names both.
LIMITED = ("usage", "failcnt", "peak", "swap", "pressure")
FILES = tuple(FILES_V2) + tuple(f"{n}:limited" for n in LIMITED)  # = collect.plan.CGROUP_FILES
_ORDER = tuple(_SPEC_V2)  # every name but the aliases
# the gate of ":limited": read in every group when a plan names one
_GATE_V2 = (("high_bytes", "memory.high", parse_limit), ("max_bytes", "memory.max", parse_limit))
# v1: memory.limit_in_bytes alone. The kernel keeps memory.max <= memsw.max (mm/memcontrol-v1.c
# mem_cgroup_resize_max refuses a memsw limit below the memory limit, and a memory limit above
# the memsw limit, with EINVAL), so a group whose memory limit is unlimited has no memsw limit.
_GATE_V1 = (("max_bytes", "memory.limit_in_bytes", parse_limit),)


def _wanted(files) -> frozenset | None:
    """The plan names as a set, aliases expanded (None: every file, every group); unknown names
    are a ValueError."""
    if files is None:
        return None
    files = frozenset(files)
    bad = files - set(FILES)
    if bad:
        raise ValueError(f"unknown memory cgroup files {sorted(bad)}; known: {', '.join(FILES)}")
    out = set(files - set(ALIASES))
    for a in files & set(ALIASES):
        out.update(ALIASES[a])
    # NAME alone wins over NAME:limited
    return frozenset(n for n in out if not (n.endswith(":limited") and n[:-8] in out))


def _spec(version: int, want: frozenset | None) -> tuple:
    """(field, file, parser) of every file to read in each group, built once per walk (with the
    limit files when a ":limited" name is wanted: they decide which groups get those)."""
    table = _SPEC_V2 if version == 2 else _SPEC_V1
    out = [x for n in _ORDER if want is None or n in want for x in table[n]]
    if want is not None and any(n.endswith(":limited") for n in want):
        out += [x for x in (_GATE_V2 if version == 2 else _GATE_V1) if x not in out]
    return tuple(out)


def _cond_spec(version: int, want: frozenset | None, spec: tuple) -> tuple:
    """(field, file, parser) of the files read only in groups with a limit of their own."""
    if want is None:
        return ()
    table = _SPEC_V2 if version == 2 else _SPEC_V1
    return tuple(x for n in LIMITED if f"{n}:limited" in want for x in table[n] if x not in spec)


def _limited(texts, version: int, prefix: str) -> bool:
    """Whether the group has a memory limit of its own (see LIMITED). A limit file that is absent
    (the v2 root group has none) says no limit; one that does not parse counts as a limit (the
    files are then read: what is unknown is read, not skipped)."""
    for _f, name, _p in (_GATE_V2 if version == 2 else _GATE_V1):
        v = texts.get(name)
        if type(v) is not bytes:
            continue
        if v == b"max\n" or v == b"9223372036854771712\n":  # v2 / v1 (4 kB pages) unlimited
            continue
        try:
            if parse_limit(v.decode("utf-8", "replace"), prefix + name) < UNLIMITED:
                return True
        except ParseError:
            return True
    return False


try:  # the optional C extension (setup.py): fast_space_kv on the bytes read, no decoding
    from .._procscan import space_kv as _c_space_kv
except ImportError:  # pragma: no cover - depends on the build
    _c_space_kv = None


def _kv_bytes(data: bytes, path: str) -> dict[str, int]:
    """parse_stat of the undecoded bytes: the C fast path takes the plain ASCII form (the same dict
    fast_space_kv gives for it, tests/sources/test_cgroup_memory_walk.py), anything else is
    decoded and parsed by parse_stat (whose line parser raises the ParseErrors)."""
    out = _c_space_kv(data) if _c_space_kv is not None else None
    return out if out is not None else parse_stat(data.decode("utf-8", "replace"), path)


_FIELDS_NONE = {f: None for f in MemCgroup.__dataclass_fields__}
_new = object.__new__
_setattr = object.__setattr__


def _build(cg: str, version: int, spec, texts, prefix: str, gid: int | None = None) -> MemCgroup:
    """One group from the files read (texts: name -> bytes or Unavailable; a name absent or
    Unavailable leaves its field None). Built as processes.py builds its entries: the frozen
    dataclass given its __dict__ (every field in it), the same object its __init__ makes."""
    kw = dict(_FIELDS_NONE)
    kw["path"] = cg
    kw["version"] = version
    kw["id"] = gid
    for fld, name, parser in spec:
        v = texts.get(name)
        if v is None or type(v) is not bytes:
            continue
        if parser is parse_value or parser is parse_limit:
            # the plain form in bulk ("123\n", "max\n"); anything else through the parser
            if len(v) < 21 and v[-1:] == b"\n" and v[:-1].isdigit():
                val = int(v[:-1])
                if parser is parse_limit and val >= _UNLIMITED_FLOOR:
                    val = UNLIMITED
            elif parser is parse_limit and v == b"max\n":
                val = UNLIMITED
            else:
                val = parser(v.decode("utf-8", "replace"), prefix + name)
        elif parser in _KV_PARSERS:
            val = _kv_bytes(v, prefix + name)
        else:
            val = parser(v.decode("utf-8", "replace"), prefix + name)
        if fld == "oom":
            if val:
                kw["oom_kill_disable"] = val.get("oom_kill_disable")
                kw["under_oom"] = val.get("under_oom")
                kw["oom_kill"] = val.get("oom_kill")
            continue
        kw[fld] = val
    g = _new(MemCgroup)
    _setattr(g, "__dict__", kw)
    return g


_KV_PARSERS = (parse_stat, parse_events, _parse_oom)  # "name value" files: memory.stat, events


def _probe_field(spec, have_field: str | None) -> str | None:
    """The field whose absence makes the walk ask whether a group was removed while it was read:
    one that every live non-root group has (cgroup.procs, memory.stat, usage, events.local)."""
    fields_read = {f for f, _n, _p in spec}
    if have_field:
        fields_read.add(have_field)
    for f in ("nprocs", "stat", "current_bytes", "events_local", "failcnt"):
        if f in fields_read:
            return f
    return None


# ---- idle groups --------------------------------------------------------------------------
# A plan that does not name "idle" skips the memory cgroups that cannot be charged: the rules that
# read cgroups judge what moved in a window (limit hits, refaults, OOM kills), and in a group that
# nothing charges none of these can move. Which groups, and why (Linux mm/memcontrol.c,
# mm/memcontrol-v1.c, kernel/cgroup/cgroup.c, 6.x):
# - Memory is charged to the memcg of the task that allocates (page faults and page cache reads
#   charge the mm owner's memcg, get_mem_cgroup_from_mm; kernel objects the current task's objcg),
#   so a group with a task anywhere in its subtree can be charged at any time, and a parent
#   without tasks of its own still hits its limit through its children's charges
#   (page_counter_try_charge walks up to the root and fails at the first counter over its max).
#   Only a subtree with no task at all may be skipped.
# - But a group without tasks can still be charged remotely: swap-in of a page swapped out while
#   it was charged there (mem_cgroup_swapin_charge_folio charges the memcg recorded in the swap
#   entry while that memcg is online), and objects that keep a reference to it (bpf maps,
#   sockets' sk_memcg, fsnotify groups, the loop driver's per-memcg workers via
#   set_active_memcg). All of these exist only while the group holds a charge: the object's own
#   memory, or the swap entry (memory.swap.current / memsw). So a group is skipped only when its
#   subtree has no task AND its hierarchical charge is zero: v2 memory.current and
#   memory.swap.current (both hierarchical), v1 memory.usage_in_bytes and
#   memory.memsw.usage_in_bytes (memsw >= usage; hierarchical since use_hierarchy is forced on,
#   and we read every group's own anyway). A charge between two snapshots makes the next
#   snapshot read it; a group skipped in one snapshot and read in the next has no delta for that
#   interval, like a group created in the window.
# - v2: cgroup.events "populated" is 1 while any task is in the group or below it (the css_set
#   populated counters propagate up: cgroup_update_populated), so one file answers for a whole
#   subtree, and a skipped subtree's files are not opened (its directories are still listed, to
#   count them). The root group has no cgroup.events: it is never skipped.
# - v1 has no populated file: the group's own `tasks` (every thread; cgroup.procs lists only
#   thread-group leaders, so a process whose other threads live here would be missed) is read
#   where the charge is zero, and a group is skipped only when it and every descendant are idle.
# Whatever is unknown (a file absent or unreadable) counts as not idle: the group is read.
# Skipped groups are counted (CgroupMemory.skipped_idle), never dropped silently.


def _zero(texts, name: str, prefix: str) -> bool | None:
    """True/False: the file's integer is 0 / not; None: absent or unreadable."""
    v = texts.get(name)
    if type(v) is not bytes:
        return None
    return parse_value(v.decode("utf-8", "replace"), prefix + name) == 0


def _count_below(root: Root, d: str, depth: int, max_depth: int) -> int:
    """How many groups lie below directory d (for the skipped count), within the walk bounds."""
    n = 0
    stack = [(d, depth)]
    while stack:
        x, dep = stack.pop()
        if dep >= max_depth:
            continue
        try:
            subs = root.listdirs(x)
        except Unavailable:
            continue
        n += len(subs)
        stack.extend((posixpath.join(x, s), dep + 1) for s in subs)
    return n


_V1_USAGE = "memory.usage_in_bytes"
_V1_LIMIT = "memory.limit_in_bytes"
_V1_HIER_LIMIT = b"\nhierarchical_memory_limit "


def _v1_limit_from_stat(texts) -> bytes | None:
    """What the group's memory.limit_in_bytes prints, when its memory.stat says it: v1
    memory.stat's hierarchical_memory_limit is the lowest memory.max of the group and its
    ancestors, times the page size (mm/memcontrol-v1.c memcg1_stat_format: min over mi = memcg,
    parent, ...), and limit_in_bytes is the group's own memory.max times the page size
    (mem_cgroup_read_u64 RES_LIMIT). When the lowest is unlimited (>= 2**62 here, as
    parse_limit), the group's own is that same PAGE_COUNTER_MAX, so limit_in_bytes prints the
    same number. Else (a limit here or above, no such line, a stat not read): None, and the
    file is read."""
    st = texts.get("memory.stat")
    if type(st) is not bytes:
        return None
    i = st.find(_V1_HIER_LIMIT)
    if i < 0:
        return None
    i += len(_V1_HIER_LIMIT)
    j = st.find(b"\n", i)
    v = st[i:j] if j >= 0 else b""
    if not v.isdigit() or len(v) > 20 or int(v) < _UNLIMITED_FLOOR:
        return None
    return v + b"\n"
_V1_MEMSW = "memory.memsw.usage_in_bytes"
_V1_HIER = "memory.use_hierarchy"


def read_hierarchy(root: Root, version: int, mount: _mounts.Mount, *,
                   max_depth: int = MAX_DEPTH, max_groups: int = MAX_GROUPS,
                   files=None) -> CgroupMemory:
    """Walk one memory hierarchy (see module doc for the bounds; `files`: see read). On the
    live root the control files stay open between walks (_Kept)."""
    kept = _Kept.get(root)
    try:
        return _walk(root, version, mount, max_depth, max_groups, files, kept)
    finally:
        if kept is not None:
            kept.release()


def _walk(root: Root, version: int, mount: _mounts.Mount, max_depth: int, max_groups: int,
          files, kept) -> CgroupMemory:
    """read_hierarchy's walk.

    I/O: each group's files are read with root.read_many (LiveRoot: one directory fd, openat
    per file), the idle test's and the plan's in as few calls as the answers allow: the plan's
    files go with the idle test's first file when the group read before this one was not idle
    (a guess that only saves a call: what is read and kept is the same either way). A group's
    subdirectories are listed only when its link count does not say it has none (cgroupfs is
    kernfs: st_nlink is 2 + the subdirectories; read_many hands it over on the live root,
    elsewhere it is None and every group is listed)."""
    want = _wanted(files)
    spec = _spec(version, want)
    spec_names = tuple(dict.fromkeys(n for _f, n, _p in spec))
    # v1: a group's own limit from its memory.stat when that says "unlimited" (see
    # _v1_limit_from_stat): one file fewer per group; only for a plan's restricted reads (a
    # capture, files=None, reads every file as it is)
    lim_from_stat = (version == 1 and want is not None and "memory.stat" in spec_names
                     and _V1_LIMIT in spec_names)
    if lim_from_stat:
        spec_names = tuple(n for n in spec_names if n != _V1_LIMIT)
    cond = _cond_spec(version, want, spec)
    cond_names = tuple(dict.fromkeys(n for _f, n, _p in cond))
    skip_idle = want is not None and "idle" not in want
    read_many = kept.read_many if kept is not None else root.read_many
    listdirs = root.listdirs
    with_spec = {p: _with(p, spec_names) for p in ("cgroup.events", "tasks", _V1_USAGE)}
    # after an idle group: the idle test's files in one call (an idle group needs them all)
    idle_set = {"cgroup.events": ("cgroup.events", "memory.current", "memory.swap.current"),
                "tasks": ("tasks",), _V1_USAGE: (_V1_USAGE, _V1_MEMSW, "tasks")}
    base = _base_path(mount)
    # per group: [dir, cgroup path, parent index, texts (name -> bytes | Unavailable), idle, prefix]
    nodes: list[list] = []
    skipped = 0
    truncated = False
    busy = True  # was the last group read not idle (cost only: which files go in one call)
    # (dir, cgroup path, depth, parent index, whether the parent showed the subtree uncharged)
    stack: list[tuple[str, str, int, int, bool]] = [(norm(mount.rel), base, 0, -1, False)]
    while stack:
        d, cg, depth, parent, uncharged = stack.pop()
        if len(nodes) >= max_groups:
            truncated = True
            break
        prefix = d + "/" if d else ""  # d is normalised: mount.rel and directory names
        idle = False
        if not skip_idle or not nodes:  # every file; the hierarchy's own group is never skipped
            texts = read_many(d, spec_names)
        else:
            uncharged = uncharged and version == 1
            probe = "cgroup.events" if version == 2 else "tasks" if uncharged else _V1_USAGE
            texts = read_many(d, with_spec[probe] if busy else idle_set[probe])
        nlink = texts.nlink
        subdirs: list[str] | None = None
        if not nodes or nlink is None or nlink != 2:
            try:
                subdirs = listdirs(d)  # one directory read, no isdir per entry
            except Unavailable:
                if not nodes:
                    raise  # the hierarchy's own directory is unreadable
                continue  # removed while we walked
        has_children = bool(subdirs)
        if skip_idle and nodes:
            if version == 2:
                idle = _idle_v2(read_many, d, prefix, texts)
                if idle:  # hierarchical: the whole subtree, files unopened
                    skipped += 1 + (_count_below(root, d, depth, max_depth) if has_children else 0)
                    busy = False
                    continue
            else:
                idle, uncharged = _idle_v1(read_many, d, prefix, texts, uncharged, has_children)
            busy = not idle
            if not idle:
                _complete(read_many, d, texts, spec_names)
        nodes.append([d, cg, parent, texts, idle, prefix])
        me = len(nodes) - 1
        cg_slash = cg.endswith("/")
        if has_children and depth >= max_depth:
            truncated = True
            continue
        for n in reversed(subdirs or ()):  # reversed: pop() then visits them in sorted order
            stack.append((prefix + n, cg + n if cg_slash else f"{cg}/{n}", depth + 1, me, uncharged))
    if skip_idle and version == 1:
        # a v1 group is skipped only when it and all its descendants are idle: children come
        # after their parent in the walk, so one pass from the end settles every subtree
        for i in range(len(nodes) - 1, 0, -1):
            p = nodes[i][2]
            if p >= 0 and not nodes[i][4]:
                nodes[p][4] = False
        skipped += sum(1 for x in nodes if x[4])
    probe_field = _probe_field(spec, None)
    groups: dict[str, MemCgroup] = {}
    full = spec + cond
    dir_id = root.dir_id
    for d, cg, _parent, texts, idle, prefix in nodes:
        if idle:
            continue
        if skip_idle:
            _complete(read_many, d, texts, spec_names)  # a group found idle whose subtree was not
        if lim_from_stat and _V1_LIMIT not in texts:
            v = _v1_limit_from_stat(texts)
            if v is not None:
                texts[_V1_LIMIT] = v
            else:
                _complete(read_many, d, texts, (_V1_LIMIT,))
        lim = bool(cond_names) and _limited(texts, version, prefix)
        if lim:
            _complete(read_many, d, texts, cond_names)
        gid = texts.ino
        # the ":limited" fields only where the group has a limit (the idle test may have read
        # some of their files elsewhere: not kept, so a field never depends on the idle test)
        g = _build(cg, version, full if lim else spec, texts, prefix,
                   gid if gid is not None else dir_id(d))
        # a group removed mid-read has files that read as None: only then ask whether it is gone
        if groups and (probe_field is None or g.__dict__[probe_field] is None) and not root.isdir(d):
            continue
        groups[cg] = g
    if kept is not None:
        kept.prune()
    return CgroupMemory(version=version, mount=mount.rel, groups=groups, truncated=truncated,
                        skipped_idle=skipped)


def _with(first: str, names: tuple) -> tuple:
    """first, then the names other than it."""
    return (first,) + tuple(n for n in names if n != first) if first in names else (first,) + names


def _complete(read_many, d: str, texts, names) -> None:
    """Read the names not read yet (one call), into texts."""
    missing = [n for n in names if n not in texts]
    if missing:
        texts.update(read_many(d, missing))


def _idle_v2(read_many, d: str, prefix: str, texts) -> bool:
    """No task in the subtree (cgroup.events populated 0) and nothing charged to it (memory.current
    0, and memory.swap.current 0 or absent: without per-cgroup swap accounting no swap entry
    records a memcg, and swap-in charges the faulting task's group)."""
    v = texts.get("cgroup.events")
    if type(v) is not bytes:
        return False
    if _parse_populated(v.decode("utf-8", "replace"), prefix + "cgroup.events") != 0:
        return False
    _complete(read_many, d, texts, ("memory.current", "memory.swap.current"))
    if _zero(texts, "memory.current", prefix) is not True:
        return False
    return _zero(texts, "memory.swap.current", prefix) is not False


def _idle_v1(read_many, d: str, prefix: str, texts, uncharged: bool,
             has_children: bool) -> tuple[bool, bool]:
    """(idle, whether the children are uncharged too): usage 0, memsw usage 0 or absent (no memsw
    accounting: no swap entry records a memcg, mm/memcontrol-v1.c), no thread in `tasks`. The
    usage read stays in texts, so a group with a charge costs no extra file when the plan asks
    for it. `uncharged`: the parent's hierarchical usage and memsw were 0, so this group's are
    (with memory.use_hierarchy 1 a child's page counters charge every ancestor's too:
    page_counter_try_charge walks c->parent), and only `tasks` is read."""
    if not uncharged:
        v = texts.get(_V1_USAGE)
        if type(v) is not bytes:
            return False, False
        if parse_value(v.decode("utf-8", "replace"), prefix + _V1_USAGE) != 0:
            return False, False
        # the children are uncharged too only where this group's counters are hierarchical
        # (always since Linux 5.11, which removed use_hierarchy 0; before, per group). A leaf
        # has no children to tell: not read. (A parent is often charged itself: since 5.9 the
        # kernel charges a new child's own memcg structures to its parent, mem_cgroup_css_alloc.)
        # memsw, tasks and use_hierarchy in one call: a memsw charge makes the other two unused.
        _complete(read_many, d, texts, (_V1_MEMSW, "tasks", _V1_HIER) if has_children
                  else (_V1_MEMSW, "tasks"))
        if _zero(texts, _V1_MEMSW, prefix) is False:
            return False, False
        uncharged = False
        h = texts.get(_V1_HIER)
        if has_children and type(h) is bytes:
            uncharged = h.decode("utf-8", "replace").strip() == "1"
    else:
        _complete(read_many, d, texts, ("tasks",))
    tasks = texts.get("tasks")
    if type(tasks) is not bytes:
        return False, False
    return not tasks.decode("utf-8", "replace").strip(), uncharged


# ---- kept control files (live) ------------------------------------------------------------
# On the live root a group's control files stay open between walks and are read again with pread
# at offset 0 (ksight._procscan.read_dir_kept): a kernfs open and close cost ~4 us of a small
# control file's ~5 us, a pread ~1 us. Correctness: kernfs answers ENODEV on an open file of a
# removed group, never the text of a group made again under the same path; read_dir_kept then
# opens the path afresh (see its comment). What it costs: the fds (at most KEEP_FDS_MAX and a
# quarter of RLIMIT_NOFILE's soft limit, whichever is lower; past it files are opened and closed
# as before) and the kernel memory of each open seq_file. The fds of groups no longer walked
# are closed at the end of each walk; close_kept() closes them all; a forked child closes its
# copies. KEEP_FDS = False turns it off.
KEEP_FDS = True
KEEP_FDS_MAX = 8192
_READ_MAX = 32768  # files above this are read through the root (memory.stat is 1-2 kB)

try:
    from .._procscan import BIG as _C_BIG, read_dir_kept as _c_read_dir_kept
except ImportError:  # pragma: no cover - depends on the build
    _c_read_dir_kept = None
    _C_BIG = -2


class _Kept:
    """The kept fds of one process: {directory: read_dir_kept's entry}. One walk at a time
    (a lock taken without waiting: a second thread walks without the kept fds)."""

    entries: dict[str, dict] = {}
    count = 0  # fds held
    gen = 0  # walks so far: which entries were proven alive in this walk
    lock = _thread.allocate_lock()
    pid = os.getpid()

    @classmethod
    def get(cls, root: Root) -> "_Kept | None":
        if not (KEEP_FDS and _c_read_dir_kept is not None and type(root) is LiveRoot):
            return None
        if not cls.lock.acquire(False):
            return None
        if cls.pid != os.getpid():  # forked without the at-fork hook: the numbers are not ours
            cls.entries = {}
            cls.count = 0
            cls.pid = os.getpid()
        k = cls()
        k.root = root
        k.seen: set[str] = set()
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        k.cap = KEEP_FDS_MAX if soft == resource.RLIM_INFINITY else min(KEEP_FDS_MAX, soft // 4)
        _Kept.gen += 1
        return k

    def read_many(self, d: str, names) -> DirFiles:
        """Root.read_many (same bytes and Unavailable reasons), with `ino` and `nlink`; `d` is a
        normalised root-relative path (the walk's), `names` a sequence of file names."""
        self.seen.add(d)
        entry = _Kept.entries.get(d)
        if entry is None:
            entry = _Kept.entries[d] = {}
        room = self.cap - _Kept.count
        got = _c_read_dir_kept("/" + d, names, _READ_MAX, entry, _Kept.gen, room if room > 0 else 0)
        if type(got) is int:  # the directory itself: as LiveRoot.read_many says it
            return self.root.read_many(d, names)
        nlink, ino, vals, added, nbad = got
        out = DirFiles(zip(names, vals))
        out.nlink = nlink
        out.ino = ino
        _Kept.count += added
        if not nbad:
            return out
        prefix = d + "/" if d else ""
        for n, v in zip(names, vals):
            if type(v) is bytes:
                continue
            elif v == _C_BIG:  # larger than the buffer: the ordinary read
                try:
                    out[n] = self.root.read_bytes(prefix + n)
                except Unavailable as u:
                    out[n] = u
            else:  # the reason LiveRoot.read_many gives for this errno
                out[n] = Unavailable(prefix + n, _os_reason(prefix + n, OSError(v, os.strerror(v)),
                                                           self.root._pid_exists))
        return out

    def prune(self) -> None:
        """Close the fds of directories this walk did not read (groups removed, or skipped)."""
        for d in [d for d in _Kept.entries if d not in self.seen]:
            _Kept.count -= _drop(_Kept.entries.pop(d))

    def release(self) -> None:
        _Kept.lock.release()


def _drop(entry: dict) -> int:
    n = 0
    for k, fd in entry.items():
        if k != "." and fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
            n += 1
    return n


def kept_fds() -> int:
    """How many cgroup control file fds are kept open now."""
    return _Kept.count


def close_kept() -> None:
    """Close every kept cgroup fd (the next walk opens and keeps them again if KEEP_FDS)."""
    with _Kept.lock:
        _close_all()


def _close_all() -> None:
    for e in _Kept.entries.values():
        _drop(e)
    _Kept.entries = {}
    _Kept.count = 0


def _after_fork_in_child() -> None:
    _Kept.lock = _thread.allocate_lock()
    _Kept.pid = os.getpid()
    _close_all()  # the child's copies: the parent's stay open


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def read(root: Root, files=None) -> CgroupMemory:
    """Every memory cgroup. `files`: the plan names (collect.plan.CGROUP_FILES; FILES_V2/FILES_V1
    say which files each stands for) of the files to read in each group; None reads every file
    of every group. The fields of a file not asked for are None, as for an absent file. Unless
    "idle" is named, groups that nothing can charge (no task in their subtree, no charge; see
    "idle groups" above) are not read, only counted in skipped_idle. Why: the walk costs a few
    open/read/close per file per group, and hosts run hundreds of groups."""
    want = _wanted(files)
    version, mount = find_hierarchy(root, _mounts.read(root))
    if version is None or mount is None:
        raise Unavailable(SOURCE, "no memory cgroup controller mounted")
    return read_hierarchy(root, version, mount, files=want)
