"""`ksight pagecache`: where the page cache is, how close dirty pages are to the writeback
limits, the zone watermarks, swap, and (with --protect) one workload's cgroup and its cache.

Computed from one Snapshot (sources meminfo, vmstat, zoneinfo, sysctl, swaps, cgroup_memory);
missing sources leave their part None and are listed in `unavailable`.

Dirty thresholds: computed in ksight.model.dirty (one place for this view and the rules).

--protect advice is typed diagnose.finding.Action data (cgroup file writes with the file's
absolute path under the mount the cgroup_memory source found, commands, code changes), the same
actions `ksight check` emits, so a tuning step can apply them; text lives in
render/pagecache_text.py. Views return data.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..diagnose.finding import Action
from ..model.dirty import DirtyLimits, dirty_limits, totalreserve_pages  # noqa: F401
from ..model.snapshot import Missing, Snapshot
from ..render.units import UNLIMITED_FLOOR
from ..render.units import size as _units_size


def _size(b: int | None) -> str:
    """Sizes inside an action's `why` (render.units; a cgroup's no-limit value is "max")."""
    return _units_size(b, unlimited=True)


SOURCES = ("meminfo", "vmstat", "zoneinfo", "sysctl", "swaps", "uptime")
PROTECT_SOURCES = SOURCES + ("cgroup_memory",)

IDENTITY_WHY = (
    "Buffers + Cached + SwapCached is every page in the page cache (NR_FILE_PAGES). The LRU side "
    "misses file pages on the unevictable list (mlocked files, ramfs, SHM_LOCKed segments: see "
    "Unevictable/Mlocked), pages isolated by reclaim or migration at that instant, and pages "
    "still in per-CPU LRU batches; Shmem is counted on the anon LRU, so it is added separately. "
    "A gap of a few MB is normal; hugetlbfs pages appear on neither side (HugePages_*)."
)


@dataclass(frozen=True)
class CacheBreakdown:
    buffers_kb: int | None
    cached_kb: int | None
    swap_cached_kb: int | None
    active_file_kb: int | None
    inactive_file_kb: int | None
    shmem_kb: int | None
    unevictable_kb: int | None
    mlocked_kb: int | None
    sreclaimable_kb: int | None
    page_cache_kb: int | None  # Buffers + Cached + SwapCached
    lru_side_kb: int | None  # Active(file) + Inactive(file) + Shmem + SwapCached
    gap_kb: int | None  # page_cache_kb - lru_side_kb
    buff_cache_kb: int | None  # free(1): Buffers + Cached + SReclaimable
    why: str = IDENTITY_WHY
    lazyfree_kb: int | None = None  # vmstat (pglazyfree - pglazyfreed) * page size: an upper bound
    gap_why: str | None = None  # why this gap (negative: MADV_FREE pages on Inactive(file))


@dataclass(frozen=True)
class ZoneState:
    node: int
    name: str
    free_pages: int | None
    min_pages: int | None
    low_pages: int | None
    high_pages: int | None
    managed_pages: int | None
    state: str  # "ok", "below high", "below low (kswapd)", "below min (direct reclaim)", "empty"


@dataclass(frozen=True)
class SwapState:
    total_kb: int | None
    free_kb: int | None
    used_kb: int | None
    cached_kb: int | None
    devices: tuple = ()


@dataclass(frozen=True)
class ProtectReport:
    target: str
    pid: int | None
    cgroup: str | None
    version: int | None
    current_bytes: int | None
    min_bytes: int | None
    low_bytes: int | None
    high_bytes: int | None
    max_bytes: int | None
    soft_limit_bytes: int | None
    file_bytes: int | None  # page cache charged to the group
    active_file_bytes: int | None
    anon_bytes: int | None
    advice: tuple[str, ...] = ()  # the actions, one line each (JSON format 1; use `actions`)
    notes: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()  # what to do, as data (cgroup writes, commands, code)
    cgroup_dir: str | None = None  # absolute directory of the group's files (from the mount)


@dataclass(frozen=True)
class PagecacheReport:
    page_size: int
    cache: CacheBreakdown | None
    dirty: DirtyLimits | None
    zones: tuple[ZoneState, ...]
    swap: SwapState | None
    protect: ProtectReport | None = None
    unavailable: tuple[Missing, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


# ---- the parts -----------------------------------------------------------------------------

def _sum(*vals):
    return None if any(v is None for v in vals) else sum(vals)


def cache_breakdown(mi, vmstat=None, page_size: int = 4096) -> CacheBreakdown:
    g = lambda n: getattr(mi, n)  # noqa: E731
    left = _sum(g("buffers_kb"), g("cached_kb"), g("swap_cached_kb"))
    right = _sum(g("active_file_kb"), g("inactive_file_kb"), g("shmem_kb"), g("swap_cached_kb"))
    gap = None if left is None or right is None else left - right
    lazy = None
    if vmstat is not None and vmstat.get("pglazyfree") is not None:
        lazy = max(vmstat.get("pglazyfree") - (vmstat.get("pglazyfreed") or 0), 0) * page_size // 1024
    return CacheBreakdown(
        g("buffers_kb"), g("cached_kb"), g("swap_cached_kb"), g("active_file_kb"),
        g("inactive_file_kb"), g("shmem_kb"), g("unevictable_kb"), g("mlocked_kb"),
        g("sreclaimable_kb"), left, right, gap,
        _sum(g("buffers_kb"), g("cached_kb"), g("sreclaimable_kb")),
        lazyfree_kb=lazy, gap_why=gap_reason(gap, lazy))


def gap_reason(gap_kb: int | None, lazyfree_kb: int | None) -> str | None:
    """Why the LRU side exceeds the page cache (a negative gap), or None when it does not.

    Since 4.12, MADV_FREE'd anonymous pages are moved to the inactive *file* LRU
    (mm/swap.c lru_lazyfree / folio_mark_lazyfree: ClearPageSwapBacked, so reclaim can drop them
    without swap) while they stay anonymous: they are in Inactive(file) but not in Cached.
    vmstat pglazyfree counts pages marked, pglazyfreed those reclaim freed; the difference is an
    upper bound of what still sits there (pages written again or unmapped are not subtracted)."""
    if gap_kb is None or gap_kb >= 0:
        return None
    if lazyfree_kb is None:
        return (f"the LRU side is {-gap_kb:,} kB larger: on 4.12+ kernels MADV_FREE'd anonymous "
                "pages sit on Inactive(file) without being in Cached; this kernel prints no "
                "pglazyfree to tell (older than 4.12: pages isolated or in per-CPU batches only)")
    if lazyfree_kb >= -gap_kb:
        return (f"the LRU side is {-gap_kb:,} kB larger: MADV_FREE'd anonymous pages sit on "
                f"Inactive(file) but not in Cached (4.12+); vmstat pglazyfree - pglazyfreed = "
                f"{lazyfree_kb:,} kB marked and not yet reclaimed, enough to explain it (an upper "
                "bound: pages written again or unmapped are not subtracted)")
    return (f"the LRU side is {-gap_kb:,} kB larger; MADV_FREE'd pages (pglazyfree - pglazyfreed "
            f"= {lazyfree_kb:,} kB at most) explain only part of it: the rest is pages counted "
            "between the two reads of /proc/meminfo's lines")


def zone_states(zoneinfo) -> tuple[ZoneState, ...]:
    out = []
    for z in zoneinfo.zones:
        f = z.free_pages
        if z.managed_pages is None:
            # kernels before 3.8 print no "managed" line (present/spanned only): the size the
            # buddy allocator manages is unknown, which is not the same as an empty zone
            st = "unknown managed size"
        elif not z.managed_pages:
            st = "empty"
        elif f is None or z.min_pages is None:
            st = "unknown"
        elif f < z.min_pages:
            st = "below min (direct reclaim)"
        elif z.low_pages is not None and f < z.low_pages:
            st = "below low (kswapd)"
        elif z.high_pages is not None and f < z.high_pages:
            st = "below high"
        else:
            st = "ok"
        out.append(ZoneState(z.node, z.name, f, z.min_pages, z.low_pages, z.high_pages,
                             z.managed_pages, st))
    return tuple(out)


def swap_state(mi, swaps) -> SwapState | None:
    if mi is None and swaps is None:
        return None
    total = mi.swap_total_kb if mi is not None else (swaps.size_kb if swaps else None)
    free = mi.swap_free_kb if mi is not None else None
    used = (total - free) if total is not None and free is not None else (swaps.used_kb if swaps else None)
    return SwapState(total, free, used, mi.swap_cached_kb if mi is not None else None,
                     tuple(swaps.devices) if swaps is not None else ())


# ---- --protect -------------------------------------------------------------------------------

def _mib_up(b: float) -> int:
    """Round up to a whole MiB, in bytes."""
    return int(math.ceil(b / 2**20)) * 2**20


def cgroup_dir(cgm, path: str) -> str | None:
    """The absolute directory of the memory cgroup at `path`, under the mount point the
    cgroup_memory source read (never an assumed /sys/fs/cgroup); None when it did not say."""
    if cgm is None or not getattr(cgm, "mount", None):
        return None
    mount = "/" + cgm.mount.strip("/")
    return mount if path in ("/", "") else mount + "/" + path.strip("/")


def find_group(cgm, path: str | None):
    """The group at `path`; when the walk stopped at its bounds (cgm.truncated) and did not
    reach it, its nearest ancestor the walk saw; else None (no such group)."""
    if cgm is None or path is None:
        return None
    p = path.rstrip("/") or "/"
    if p in cgm.groups:
        return cgm.groups[p]
    if not getattr(cgm, "truncated", False):
        return None
    for _ in range(64):
        if p in cgm.groups:
            return cgm.groups[p]
        if p == "/":
            return None
        p = p.rsplit("/", 1)[0] or "/"
    return None


def protect(snap: Snapshot, target: str, process=None) -> ProtectReport:
    """One workload's memory cgroup and advice on protecting its page cache.

    target: a PID (then `process` is its collect.processes.Process with .cgroup) or a cgroup path
    as /proc/PID/cgroup shows it ('/system.slice/foo.service')."""
    cgm = snap.get("cgroup_memory")
    notes: list[str] = []
    pid = int(target) if target.isdigit() else None
    path = None
    if pid is not None:
        if process is None or getattr(process, "cgroup", None) is None:
            notes.append(f"PID {pid}: not found or its /proc/{pid}/cgroup is unreadable")
        else:
            path = process.cgroup.path_for("memory")
            if path is None:
                notes.append(f"PID {pid}: no memory controller line in /proc/{pid}/cgroup")
    else:
        path = target if target.startswith("/") else "/" + target
    g = find_group(cgm, path)
    if cgm is None:
        m = snap.missing("cgroup_memory")
        notes.append("memory cgroups unavailable" + (f": {m.reason}" if m else ""))
    elif path is not None and g is None:
        notes.append(f"cgroup {path} not found under the memory hierarchy")
    elif g is not None and g.path != path:
        notes.append(f"{path} not read (walk bounds); showing its nearest ancestor {g.path}")
    if g is None:
        actions = _generic_actions()
        return ProtectReport(target, pid, path, cgm.version if cgm else None, *([None] * 9),
                             advice=advice_lines(actions), notes=tuple(notes),
                             actions=tuple(actions))
    st = g.stat or {}
    if g.version == 2:
        file_b, afile, anon = st.get("file"), st.get("active_file"), st.get("anon")
    else:
        # v1 memory.stat is in bytes; total_* include descendants (use_hierarchy)
        file_b = st.get("total_cache", st.get("cache"))
        afile = st.get("total_active_file", st.get("active_file"))
        anon = st.get("total_rss", st.get("rss"))
    d = cgroup_dir(cgm, g.path)
    if d is None:
        notes.append("the memory cgroup mount point is unknown: file paths cannot be given")
    actions = _actions(cgm, g, d, file_b, afile, anon)
    if g.path == "/":
        notes.append("the workload is in the root cgroup: no limits apply and none can be set "
                     "there; move it into its own group (systemd-run --scope -p MemoryLow=...)")
    return ProtectReport(target, pid, g.path, g.version, g.current_bytes, g.min_bytes, g.low_bytes,
                         g.high_bytes, g.max_bytes, g.soft_limit_bytes, file_b, afile, anon,
                         advice_lines(actions), tuple(notes), tuple(actions), d)


def _generic_actions() -> list[Action]:
    return [
        Action.code(
            "mlock critical data: mlock(2) / mlockall(MCL_CURRENT|MCL_FUTURE), or `vmtouch -l FILE`",
            why="locked pages move to the unevictable list and are never reclaimed (RLIMIT_MEMLOCK "
                "bounds how much)"),
        Action.code(
            "drop cache that is not worth keeping: posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) after "
            "streaming reads/writes (fdatasync first for dirty pages), madvise(addr, len, "
            "MADV_DONTNEED) for mapped ranges done with, or O_DIRECT for bulk copies",
            why="so it does not push the hot set out of the page cache"),
    ]


def _unit(path: str) -> str | None:
    """The systemd unit a cgroup path ends in ('/system.slice/pg.service' -> 'pg.service')."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if last.endswith((".service", ".scope", ".slice")) else None


def _ancestors(path: str) -> list[str]:
    """'/a/b/c' -> ['/a', '/a/b'] (the root group has no limits of its own)."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _near_limit(g) -> bool:
    cur = g.current_bytes
    return (g.max_bytes is not None and g.max_bytes < UNLIMITED_FLOOR and cur is not None
            and cur > 0.9 * g.max_bytes)


def _file(d: str | None, path: str, name: str) -> str:
    """The absolute path of a cgroup file; without a known mount, the cgroup path (a command
    can still be written, but it says where the group is, not where the file is)."""
    return f"{d}/{name}" if d else f"<memory cgroup mount>{path if path != '/' else ''}/{name}"


def _actions(cgm, g, d: str | None, file_b, afile, anon) -> list[Action]:
    out: list[Action] = []
    cur = g.current_bytes
    ws = (file_b or 0) + (anon or 0)
    if g.path == "/":
        if g.version == 2 and file_b is not None:
            low = _mib_up(1.1 * ws)
            out.append(Action.command(
                f"systemd-run --scope -p MemoryLow={low} -- COMMAND",
                why="the workload is in the root cgroup, where no limit or protection can be set: "
                    "start it in a group of its own with memory.low set"))
        elif g.version == 1:
            out.append(Action.code(
                "run the workload in a memory cgroup of its own (systemd-run --scope -- COMMAND) "
                "and set memory.soft_limit_in_bytes there",
                why="the workload is in the root cgroup, where no limit can be set; cgroup v1 has "
                    "no memory.low, the soft limit only orders global reclaim"))
        out.extend(_generic_actions())
        return out
    if g.version == 2:
        if file_b is not None:
            low = _mib_up(1.1 * ws)
            mn = _mib_up((afile or 0) + (anon or 0))
            out.append(Action.cgroup_write(
                _file(d, g.path, "memory.low"), low, g.low_bytes,
                why=f"its anon + page cache {_size(ws)} plus 10% ({_size(low)}): reclaim leaves the "
                    "group alone while it is under this, unless nothing else is left"))
            unit = _unit(g.path)
            if unit:
                out.append(Action.command(f"systemctl set-property {unit} MemoryLow={low}",
                                          why="the same through systemd, kept across restarts"))
            for a in _ancestors(g.path):
                pg = cgm.groups.get(a)
                if pg is not None and pg.low_bytes is not None and pg.low_bytes >= low:
                    continue
                out.append(Action.cgroup_write(
                    _file(cgroup_dir(cgm, a), a, "memory.low"),
                    low, None if pg is None else pg.low_bytes,
                    why="protection is bounded by the ancestors: each parent's memory.low caps what "
                        "its children get"))
            out.append(Action.cgroup_write(
                _file(d, g.path, "memory.min"), mn, g.min_bytes,
                why=f"anon + active file cache ({_size(mn)}), only for data that must stay: a hard "
                    "guarantee, never reclaimed even under global pressure, so the rest of the "
                    "machine OOMs first; keep it small"))
        if _near_limit(g):
            rec = _mib_up(1.25 * cur)
            out.append(Action.cgroup_write(
                _file(d, g.path, "memory.max"), rec, g.max_bytes,
                why=f"usage {_size(cur)} is within 10% of memory.max {_size(g.max_bytes)}: the group "
                    "reclaims its own cache at its limit; raise memory.max (or memory.high), here "
                    "to 25% above the usage"))
    else:
        if cur:
            out.append(Action.cgroup_write(
                _file(d, g.path, "memory.soft_limit_in_bytes"), _mib_up(cur), g.soft_limit_bytes,
                why="cgroup v1 has no memory.low / memory.min: nothing truly protects this group's "
                    "cache. The soft limit only orders global reclaim (groups above theirs are "
                    "reclaimed first): set it at or above this group's usage, and lower it on the "
                    "groups that may lose cache"))
        out.append(Action.code(
            "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2) and protect the group with "
            "memory.low",
            why="v1 cannot protect a group's cache from global reclaim; v2's memory.low can"))
        if _near_limit(g):
            rec = _mib_up(1.25 * cur)
            out.append(Action.cgroup_write(
                _file(d, g.path, "memory.limit_in_bytes"), rec, g.max_bytes,
                why=f"usage {_size(cur)} is within 10% of memory.limit_in_bytes "
                    f"{_size(g.max_bytes)}: the group reclaims its own cache at its limit; raise "
                    "it, here to 25% above the usage"))
    out.extend(_generic_actions())
    return out


def advice_lines(actions) -> tuple[str, ...]:
    """One line per action, for the `advice` list of format-1 JSON (scripts read `actions`)."""
    out = []
    for a in actions:
        if a.kind == "cgroup":
            what = f"echo {a.recommended} > {shlex.quote(a.path)}"
        elif a.kind == "sysctl":
            what = f"sysctl -w {a.name}={a.recommended}"
        else:
            what = a.text or ""
        out.append(f"{what} ({a.why})" if a.why else what)
    return tuple(out)


# ---- the report ------------------------------------------------------------------------------

def report(snap: Snapshot, *, protect_target: str | None = None, process=None) -> PagecacheReport:
    mi, zi, sw = snap.get("meminfo"), snap.get("zoneinfo"), snap.get("swaps")
    wanted = PROTECT_SOURCES if protect_target else SOURCES
    unavailable = tuple(m for m in snap.unavailable if m.source in wanted or m.source == "processes")
    for n in wanted:
        if n != "uptime" and snap.get(n) is None and snap.missing(n) is None:
            unavailable += (Missing(n, "not collected"),)
    notes = []
    if snap.host.page_size_assumed:
        notes.append("page size not recorded in the capture: 4096 assumed")
    return PagecacheReport(
        page_size=snap.host.page_size or 4096,
        cache=cache_breakdown(mi, snap.get("vmstat"), snap.host.page_size or 4096)
        if mi is not None else None,
        dirty=dirty_limits(snap),
        zones=zone_states(zi) if zi is not None else (),
        swap=swap_state(mi, sw),
        protect=protect(snap, protect_target, process) if protect_target else None,
        unavailable=unavailable,
        notes=tuple(notes),
    )


__all__ = ["PagecacheReport", "CacheBreakdown", "DirtyLimits", "ZoneState", "SwapState",
           "ProtectReport", "report", "cache_breakdown", "dirty_limits", "totalreserve_pages",
           "zone_states", "swap_state", "protect", "find_group", "cgroup_dir",
           "advice_lines", "SOURCES", "gap_reason",
           "PROTECT_SOURCES", "IDENTITY_WHY"]
