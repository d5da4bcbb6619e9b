"""/proc/PID/smaps (or maps) of the processes that grow: the mappings behind a growing process
and their count, for the memory growth rules (diagnose/rules/memory/process_growth.py) and
`ksight leak`; their diff over a window is model/mappings.py.

smaps costs the kernel a page-table walk per mapping, so it is read only for the few processes
that grow: at most MAPS_PROCS per snapshot, those whose size or resident set grew most since
this ksight process first saw them, by at least PICK_MIN_PAGES (the selection keeps state between
snapshots of one run: `_FIRST`). The PIDs and sizes come from the process scan's table (VmSize,
VmRSS of status: the source runs after the scan, `after_processes`), so /proc is neither listed
nor statm read a second time; without a table, /proc is listed and statm read. Each smaps is read
light (smaps.parse_light: region headers, Rss and Anonymous; no Region objects), and every kind
of region is kept but the kernel's own pages: heap, stack, anon, shm (/dev/shm, SysV, memfd),
file. Live only; on a capture or fixture tree every proc/PID/smaps (or maps) the tree holds is
read, or exactly the PIDs the capture chose. Opt-in (SYSTEM default=False): read only when a rule
names it.
"""

from __future__ import annotations

import os
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable

SOURCE = "process_maps"
MAPS_PROCS = 4  # processes whose smaps are read per snapshot
PICK_MIN_PAGES = 256  # 1 MiB at 4 kB pages: less is allocator and stack noise
MAX_REGIONS = 512  # regions kept per process and snapshot (largest first)
SMAPS_MAX_VMAS = 4096  # beyond this many mappings, read maps (no page-table walk) not smaps
CHOSEN_PATH = "ksight/process_maps"  # in a capture: the PIDs whose smaps were read, one a line


# ---- the process_maps source: smaps of the growing processes only ------------------------------

KINDS = ("heap", "stack", "anon", "shm", "file")  # what a kept region is (kernel pages are not kept)
_KERNEL_PAGES = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]")


def kind_of(pathname: str, perms: str, inode: int) -> str | None:
    """heap, stack, anon (anonymous mmap, [anon:name]), shm (/dev/shm files, SysV segments,
    memfd, shared anonymous memory: the kernel shows it as "/dev/zero (deleted)"), file (any
    other mapped file, libraries and the program too); None for the kernel's own pages ([vdso],
    [vvar]...), which never grow. As views/pmap.classify, without telling exe and lib apart."""
    if pathname == "[heap]":
        return "heap"
    if pathname.startswith("[stack"):
        return "stack"
    if pathname in _KERNEL_PAGES:
        return None
    if pathname.startswith("[anon_shmem:"):
        return "shm"
    if not pathname or (pathname.startswith("[") and pathname.endswith("]")):
        return "anon"
    if pathname.startswith(("/dev/shm/", "/SYSV", "/memfd:")) or (
            pathname.startswith("/dev/zero") and perms[3:4] == "s"):
        return "shm"
    return "file"


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    pathname: str  # '' anonymous, '[heap]', '[stack]', a file
    rss_kb: int | None  # None when read from maps
    kind: str = "anon"  # KINDS
    anon_kb: int | None = None  # smaps Anonymous: private pages written (None from maps)

    @property
    def size_kb(self) -> int:
        return (self.end - self.start) // 1024

    def label(self) -> str:
        return f"{self.start:x}-{self.end:x} {self.perms} {self.pathname or '[anon]'}"


@dataclass(frozen=True)
class ProcMaps:
    pid: int
    count: int  # mappings (VMAs): lines of maps, regions of smaps
    regions: tuple[Mapping, ...]  # every kind but the kernel's pages, largest MAX_REGIONS first
    path: str  # the file read

    @property
    def anon(self) -> tuple[Mapping, ...]:
        """The anonymous and [heap] regions."""
        return tuple(m for m in self.regions if m.kind in ("anon", "heap"))


@dataclass(frozen=True)
class ProcessMaps:
    procs: dict[int, ProcMaps]  # pid -> ProcMaps (typed: the sample codec decodes by the annotation)
    chosen_by: str


_FIRST: dict = {}  # (root base, pid) -> (size, resident) pages at this ksight's first look


def _statm(root, pid: int) -> tuple[int, int] | None:
    try:
        f = root.read_text(f"proc/{pid}/statm").split()
        return int(f[0]), int(f[1])
    except (Unavailable, ValueError, IndexError):
        return None


def regions_of(rows, pid: int, path: str) -> ProcMaps:
    """ProcMaps from light rows (start, end, perms, inode, pathname, rss_kb, anon_kb): the
    regions worth diffing, largest MAX_REGIONS first."""
    kept = []
    for start, end, perms, inode, name, rss, anon in rows:
        k = kind_of(name, perms, inode)
        if k is not None:
            kept.append(Mapping(start, end, perms, name, rss, k, anon))
    if len(kept) > MAX_REGIONS:
        kept.sort(key=lambda m: m.end - m.start, reverse=True)
        kept = kept[:MAX_REGIONS]
    return ProcMaps(pid, len(rows), tuple(kept), "/" + path)


def _read_one(root, pid: int, prev_count: int | None) -> ProcMaps | None:
    from .proc_pid import maps as _maps
    from .proc_pid import smaps as _smaps

    def maps_rows(data: bytes, path: str):
        return [(r.start, r.end, r.perms, r.inode, r.pathname, None, None)
                for r in _maps.parse(data.decode("utf-8", "replace"), path).regions]

    tries = [("smaps", _smaps.parse_light), ("maps", maps_rows)]
    if prev_count is not None and prev_count > SMAPS_MAX_VMAS:
        tries.reverse()
    for name, parse in tries:
        path = f"proc/{pid}/{name}"
        try:
            rows = parse(root.read_bytes(path), path)
        except (Unavailable, ParseError):
            continue
        return regions_of(rows, pid, path)
    return None


def _sizes_from_table(processes: dict, page_size: int) -> dict[int, tuple[int, int]]:
    """pid -> (size, resident) pages from the process scan's status (VmSize, VmRSS): the same
    kernel counters statm prints, already read by the scan."""
    out = {}
    for pid, p in processes.items():
        st = getattr(p, "status", None)
        if st is None or st.vm_size_kb is None:
            continue  # kernel thread or zombie: no address space
        kb = page_size // 1024 or 4
        out[pid] = (st.vm_size_kb // kb, (st.vm_rss_kb or 0) // kb)
    return out


def read(root, processes: dict | None = None) -> ProcessMaps:
    """Live: smaps of the MAPS_PROCS processes that grew most (size or resident pages, from
    statm) since this ksight first saw them. A capture or fixture tree: every proc/PID/smaps
    (or maps) it holds."""
    out: dict[int, ProcMaps] = {}
    if processes and root.live:
        pids = list(processes)  # the scan's table: /proc is not listed a second time
    else:
        try:
            pids = [int(n) for n in root.listdir("proc") if n.isdigit()]
        except Unavailable as u:
            raise Unavailable(SOURCE, u.reason) from None
    if not root.live:
        try:  # a capture says which processes it read (maybe none): exactly those, as live
            chosen = root.read_text(CHOSEN_PATH).split()
        except Unavailable:
            chosen = None
        if chosen is not None:
            from ._text import to_int

            # a capture's own file, checked like kernel text: a PID is a plain decimal number
            for pid in (to_int(tok, CHOSEN_PATH) for tok in chosen):
                if pid <= 0 or pid > 2**22:  # PID_MAX_LIMIT
                    raise ParseError(CHOSEN_PATH, None, str(pid), "not a process id")
                got = _read_one(root, pid, None)
                if got is not None:
                    out[pid] = got
            return ProcessMaps(out, "the processes the capture read them for (those that grew)")
        for pid in pids:
            if root.exists(f"proc/{pid}/smaps") or root.exists(f"proc/{pid}/maps"):
                got = _read_one(root, pid, None)
                if got is not None:
                    out[pid] = got
        if not out:
            raise Unavailable("proc/PID/smaps", "not in this capture (a capture records them "
                              "for the processes that grow, since ksight capture --pid)")
        return ProcessMaps(out, "every process whose smaps or maps the capture holds")
    base = getattr(root, "base", "/")
    me = os.getpid()
    grown = []
    # the scan's table when the collector hands it over (no second read per process), else statm
    sizes = _sizes_from_table(processes, os.sysconf("SC_PAGE_SIZE")) if processes else None
    for pid in pids:
        if pid == me:
            continue
        now = sizes.get(pid) if sizes is not None else _statm(root, pid)
        if now is None or now[0] == 0:  # gone, or no address space (kernel thread)
            continue
        first = _FIRST.setdefault((base, pid), now)
        g = max(now[0] - first[0], now[1] - first[1])
        if g >= PICK_MIN_PAGES:
            grown.append((g, pid))
    grown.sort(reverse=True)
    for _, pid in grown[:MAPS_PROCS]:
        got = _read_one(root, pid, None)
        if got is not None:
            out[pid] = got
    from ..fs import record_extra

    # a capture keeps which processes were read (maybe none): its replay reads exactly those
    record_extra(root, CHOSEN_PATH, "".join(f"{pid}\n" for pid in out).encode())
    return ProcessMaps(out, f"the {MAPS_PROCS} processes whose size or resident set grew most "
                            f"(at least {PICK_MIN_PAGES} pages) since the first snapshot")


read_process_maps = read  # the name the rules module used
