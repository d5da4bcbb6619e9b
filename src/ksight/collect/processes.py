"""The process table: read the per-process files of every PID under proc/ through a Root.

`scan(root)` returns `(dict[pid, Process], list[Missing])`. What each Process holds is chosen
by `detail` (default: stat and status: what top and ps show; statm when asked for). Processes come and go while we
read, so:
- a PID that exits while we read it (the Root says "process exited", or a file comes back
  malformed and the PID directory is gone) is dropped and counted: one
  Missing("processes", "N processes exited during the scan") when N > 0;
- a part that cannot be read for another reason (permission denied on smaps_rollup for another
  user's process without root, a file a capture does not hold) is None on that Process and named
  in Process.missing; the scan also returns one Missing("processes:<part>", ...) per part with
  the first reason and how many processes it hit.

This is the hot path of `ksight top` and of every snapshot with processes: per-file work is kept
to one Root read and one parse, with no per-PID exists() or listdir().

Two paths give the same Process table:
- the Python path, the reference: every part read through the Root and fully parsed by the
  parsers in sources/proc_pid/ (their fast paths: one split per file, bulk int conversion,
  frozen dataclasses filled through __dict__);
- a C fast path, ksight._procscan (an optional extension built by setup.py). Why: per process,
  CPython spent ~30 us opening and reading the three files and ~50 us parsing and building
  objects, which left a 1,000-process scan slower than `ps` and short of the issue's "2x faster
  than psutil" (docs/benchmarks.md, "process scan"); C reads and parses them in a few us on top
  of the kernel's own cost. It is used only when all of these hold: the extension imported
  (PROCSCAN_ERROR says why not), `c_path` is True, `detail` is stat and status, with or
  without statm (in any order), and `root` is exactly a LiveRoot or a DirRoot (not a RecordingRoot,
  which must record the text it hands out; not an ArchiveRoot or SubRoot). On a capture tree
  (DirRoot, not live) it follows no link below the tree's base; a PID with a link is read by
  Python, which checks where the link goes.
  The C code accepts only the plain form the kernel prints and gives exactly what the Python
  parsers give for it (tests/collect/test_procscan_c.py compares both on the corpora, on bad
  input and live). Any PID it does not answer for (a read error, the process gone, a file that
  is not the plain form or is larger than its buffer, non-ASCII in status) goes through the
  Python path, which reports it as above: exited PIDs dropped and counted, other trouble
  recorded with its reason. `scan(..., c_path=False)` forces the Python path.

Units: Process stores page_size (bytes) so that virt_kb/res_kb/shr_kb/code_kb/data_kb (top's
VIRT/RES/SHR/CODE/DATA) need no outside knowledge.

Why statm is not in the default detail: the kernel prints statm (fs/proc/task_mmu.c task_statm)
and status's Vm*/Rss* lines (task_mem) from the same mm counters: VIRT = total_vm = VmSize,
RES = file+anon+shmem pages = VmRSS, SHR = file+shmem pages = RssFile+RssShmem, DATA =
data_vm+stack_vm = VmData+VmStk, CODE = end_code-start_code = VmExe (status caps it at exec_vm:
equal unless a process maps less executable memory than its text segment, which an ELF loader
does not do); a task without an address space (kernel thread, zombie) prints statm as zeros
and no Vm* lines. RssFile/RssShmem appeared in 4.5 (and 2.6-era VmSize left out reserved_vm):
on such kernels, seen as a status with VmRSS and no RssFile, statm is read as well
(`_statm_for_old_kernels`), so the columns still come from statm there. So the columns come from status with the same values (tests/collect/
test_processes.py compares both on live processes and the corpora) and one file per process
is saved; `detail=(..., "statm")` still reads it, and the columns then come from it.
"""

from __future__ import annotations

import _thread
import gc
import os
import resource
from dataclasses import fields
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Iterable

from ..errors import ParseError, Unavailable
from ..fs import DirRoot, LiveRoot, Root
from ..model.snapshot import Missing
from ..sources.proc_pid import cmdline as _cmdline
from ..sources.proc_pid import smaps as _smaps
from ..sources.proc_pid import stat as _stat
from ..sources.proc_pid import statm as _statm
from ..sources.proc_pid import status as _status
from ..sources.proc_pid.smaps import Smaps, SmapsRollup
from ..sources.proc_pid.stat import PidStat
from ..sources.proc_pid.statm import PidStatm
from ..sources.proc_pid.status import PidStatus



class _Parser:
    """A parser module of sources/proc_pid imported when a part first needs it (`ksight pmap`
    reads no cgroup, maps or oom: ~2 ms of its start-up); on first use it puts the module in
    its place among this module's globals. Process's annotations name these classes through
    it (`_cgroup.PidCgroups`), so typing.get_type_hints(Process) (store/samples) imports them."""

    __slots__ = ("_module", "_name")

    def __init__(self, module: str, name: str):
        self._module, self._name = module, name

    def __getattr__(self, attr: str):
        import importlib

        mod = importlib.import_module(f"ksight.sources.proc_pid.{self._module}")
        globals()[self._name] = mod
        return getattr(mod, attr)


_cgroup = _Parser("cgroup", "_cgroup")
_maps = _Parser("maps", "_maps")
_oom = _Parser("oom", "_oom")

try:
    from .. import _procscan  # the optional C fast path (setup.py); absent: Python only
    PROCSCAN_ERROR = ""
except ImportError as _exc:  # not built (no compiler at install time) or built for another Python
    _procscan = None
    PROCSCAN_ERROR = f"ksight._procscan not importable: {_exc}"

DEFAULT_DETAIL = ("stat", "status")
DETAILS = ("stat", "statm", "status", "cmdline", "oom", "cgroup", "smaps_rollup", "sockets",
           "maps", "smaps", "exe")
# per-mapping parts (and the exe link): read after the scan, process by process (`_add_parts`),
# so the scan of the other parts keeps its C path
MAP_PARTS = ("maps", "smaps", "exe")
EXITED = "process exited"


@dataclass(frozen=True)
class Process:
    """One process of the table: the parts read for it, and top's memory columns."""

    pid: int
    comm: str | None  # from stat (authoritative: keeps spaces and ')'), else status Name
    cmdline: tuple[str, ...] | None = None  # () for kernel threads; None: not read
    stat: PidStat | None = None
    statm: PidStatm | None = None
    status: PidStatus | None = None
    oom: _oom.OomInfo | None = None
    cgroup: _cgroup.PidCgroups | None = None
    smaps_rollup: SmapsRollup | None = None
    socket_inodes: tuple[int, ...] | None = None
    maps: _maps.Maps | None = None  # proc/PID/maps (part "maps"): the mappings, without page counts
    smaps: Smaps | None = None  # proc/PID/smaps (part "smaps"): the mappings with their pages
    exe: str | None = None  # the proc/PID/exe link (part "exe"): the program file
    missing: tuple[str, ...] = ()  # "part: reason" for each requested part that was unavailable
    page_size: int = 4096  # bytes per page on the host the process ran on (statm, stat rss)

    # top's memory columns, in kB. From statm when it was read (as top does), else from status
    # (the same kernel counters: see the module doc), then stat. A status without VmSize is a
    # task without an address space (kernel thread, zombie): statm prints zeros for it, so 0.
    def _no_mm(self) -> bool:
        s = self.status
        return s is not None and s.vm_size_kb is None and s.vm_rss_kb is None

    @property
    def virt_kb(self) -> int | None:
        if self.statm is not None:
            return self.statm.size_pages * self.page_size // 1024
        if self.status is not None and self.status.vm_size_kb is not None:
            return self.status.vm_size_kb
        if self._no_mm():
            return 0
        return self.stat.vsize_bytes // 1024 if self.stat is not None else None

    @property
    def res_kb(self) -> int | None:
        if self.statm is not None:
            return self.statm.resident_pages * self.page_size // 1024
        if self.status is not None and self.status.vm_rss_kb is not None:
            return self.status.vm_rss_kb
        if self._no_mm():
            return 0
        return self.stat.rss_pages * self.page_size // 1024 if self.stat is not None else None

    @property
    def shr_kb(self) -> int | None:
        if self.statm is not None:
            return self.statm.shared_pages * self.page_size // 1024
        s = self.status
        if s is not None and s.rss_file_kb is not None and s.rss_shmem_kb is not None:
            return s.rss_file_kb + s.rss_shmem_kb
        return 0 if self._no_mm() else None

    @property
    def code_kb(self) -> int | None:
        if self.statm is not None:
            return self.statm.text_pages * self.page_size // 1024
        s = self.status
        if s is not None and s.vm_exe_kb is not None:
            return s.vm_exe_kb
        return 0 if self._no_mm() else None

    @property
    def data_kb(self) -> int | None:
        if self.statm is not None:
            return self.statm.data_pages * self.page_size // 1024
        s = self.status
        if s is not None and s.vm_data_kb is not None and s.vm_stk_kb is not None:
            return s.vm_data_kb + s.vm_stk_kb
        return 0 if self._no_mm() else None

    @property
    def kernel_thread(self) -> bool | None:
        """True for kernel threads (PF_KTHREAD in stat flags), None when stat was not read."""
        return bool(self.stat.flags & 0x00200000) if self.stat is not None else None


def _read_oom(root: Root, pid: int, base: str):
    return _oom.read_oom(root, pid)


def _read_sockets(root: Root, pid: int, base: str):
    from ..sources.proc_pid import fd  # another module's; imported only when sockets are asked for

    return tuple(fd.socket_inodes(root, pid))


def _read_cmdline(root: Root, pid: int, base: str):
    p = base + "cmdline"
    return _cmdline.parse(root.read_bytes(p), p)


# part -> (file name under proc/PID/, parse(text, path)) for the plain text files.
_TEXT_PARTS = {
    "stat": ("stat", _stat.parse),
    "statm": ("statm", _statm.parse),
    "status": ("status", _status.parse),
    "cgroup": ("cgroup", lambda text, path: _cgroup.parse(text, path)),
    "smaps_rollup": ("smaps_rollup", _smaps.parse_rollup),
}
_OTHER_PARTS = {"cmdline": _read_cmdline, "oom": _read_oom, "sockets": _read_sockets}
_ATTR = {"sockets": "socket_inodes"}
_FIELDS = tuple(f.name for f in fields(Process))
_BLANK = {n: None for n in _FIELDS}
_new = object.__new__


def list_pids(root: Root) -> list[int]:
    return [int(n) for n in root.listdir("proc") if n.isdigit()]


def scan(
    root: Root,
    *,
    detail: Iterable[str] = DEFAULT_DETAIL,
    pids: Iterable[int] | None = None,
    page_size: int | None = None,
    c_path: bool = True,
) -> tuple[dict[int, Process], list[Missing]]:
    """Read the requested parts of every process (or of `pids`). See the module doc.

    page_size: bytes per page, stored on each Process. None means this machine's page size on
    a live root and 4096 on a capture (pass HostInfo.page_size when the capture recorded it).
    """
    detail = tuple(dict.fromkeys(detail))
    bad = [d for d in detail if d not in DETAILS]
    if bad:
        raise ValueError(f"unknown process detail {bad}; choose from {', '.join(DETAILS)}")
    if page_size is None:
        page_size = os.sysconf("SC_PAGE_SIZE") if root.live else 4096
    later = tuple(d for d in detail if d in MAP_PARTS)
    if later:
        detail = tuple(d for d in detail if d not in MAP_PARTS)
    listed_all = pids is None
    if pids is None:
        try:
            pids = list_pids(root)
        except Unavailable as u:
            return {}, [Missing("processes", f"{u.source}: {u.reason}")]
    text_parts = [(d, _TEXT_PARTS[d][0], _TEXT_PARTS[d][1]) for d in detail if d in _TEXT_PARTS]
    other_parts = [(_ATTR.get(d, d), d, _OTHER_PARTS[d]) for d in detail if d in _OTHER_PARTS]
    read = root.text_reader(one_shot=True)  # every _TEXT_PARTS file is a single_open seq_file
    procs: dict[int, Process] = {}
    exited = 0
    part_missing: dict[str, list] = {}  # part -> [first reason, count]
    blank = dict(_BLANK, missing=(), page_size=page_size)
    setattr_ = object.__setattr__

    if _use_c(root, detail, c_path):
        listed = listed_all
        pids = list(pids)
        spec = _C_SPEC or _c_spec()
        with_statm = "statm" in detail
        with_socks = "sockets" in detail
        with_status = "status" in detail  # check's CPU rules read stat alone
        # no cyclic GC while thousands of objects are made (none can form a cycle); the C objects
        # of plain values are untracked, so later full collections do not visit them either.
        # (Measured: within noise of a scan with the GC on, ~1% at 1,000 processes.)
        gc_on = gc.isenabled()
        gc.disable()
        try:
            got_c = _scan_c(root, pids, spec, with_statm, with_socks, listed, with_status)
            for pid, r in zip(pids, got_c):
                if r.__class__ is tuple:  # read and parsed in C
                    got = blank.copy()
                    got["pid"] = pid
                    if with_socks:
                        got["stat"], got["statm"], got["status"], got["socket_inodes"] = r
                    else:
                        got["stat"], got["statm"], got["status"] = r
                    got["comm"] = r[0].comm
                else:  # an errno or "not the plain form": this PID on the Python path
                    got = _one(root, pid, read, text_parts, other_parts, blank, part_missing)
                    if got is None:
                        exited += 1
                        continue
                proc = _new(Process)
                setattr_(proc, "__dict__", got)
                procs[pid] = proc
        finally:
            if gc_on:
                gc.enable()
    else:
        for pid in pids:
            got = _one(root, pid, read, text_parts, other_parts, blank, part_missing)
            if got is None:
                exited += 1
                continue
            # a frozen dataclass given its __dict__ (every field is in `got`): this loop is the
            # hot path, and 12 object.__setattr__ calls per process are measurable
            proc = _new(Process)
            setattr_(proc, "__dict__", got)
            procs[pid] = proc

    if "status" in detail and "statm" not in detail and procs:
        _statm_for_old_kernels(procs, read)
    if later and procs:
        _add_parts(root, procs, procs, later, part_missing)

    missing: list[Missing] = []
    if exited:
        missing.append(Missing("processes", f"{exited} processes exited during the scan"))
    for part, (reason, n) in part_missing.items():
        missing.append(Missing(f"processes:{part}", f"{reason} ({n} of {len(procs)} processes)"))
    return procs, missing


def _one(root, pid, read, text_parts, other_parts, blank, part_missing) -> dict | None:
    """One PID on the Python path: the Process fields, or None when the process is gone."""
    base = f"proc/{pid}/"
    got = blank.copy()
    got["pid"] = pid
    # fast path: every part reads and parses; anything else redoes this PID carefully
    try:
        if other_parts:
            raise _Careful
        for part, fname, parse in text_parts:
            p = base + fname
            got[part] = parse(read(p), p)
    except (Unavailable, ParseError, _Careful):
        got = _careful(root, pid, base, read, text_parts, other_parts, blank, part_missing)
        if got is None:
            return None
    st = got["stat"]
    if st is not None:
        got["comm"] = st.comm
    elif got["status"] is not None:
        got["comm"] = got["status"].name
    return got


def _statm_for_old_kernels(procs: dict[int, Process], read) -> None:
    """Kernels before 4.5 print no RssFile/RssShmem in status, so SHR can only come from statm:
    for a process with an address space (VmRSS) and no RssFile, statm is read too (when it
    cannot be read, SHR stays None). Never taken on a current kernel: one test per process."""
    for pid, p in procs.items():
        s = p.status
        if s is not None and s.rss_file_kb is None and s.vm_rss_kb is not None and p.statm is None:
            path = f"proc/{pid}/statm"
            try:
                p.__dict__["statm"] = _statm.parse(read(path), path)
            except (Unavailable, ParseError):
                pass


class _Careful(Exception):
    """Internal: take the careful path for this PID."""


def _use_c(root: Root, detail: tuple[str, ...], c_path: bool) -> bool:
    """The C path: asked for, built, the default parts (with or without statm) or stat alone
    (check's CPU rules), and a root whose reads are plain file reads below a directory (not a
    RecordingRoot, which must record the text it hands out, nor an archive or a SubRoot)."""
    return (c_path and _procscan is not None and type(root) in (LiveRoot, DirRoot)
            and set(detail) in _C_SETS)


_C_SETS = ({"stat", "status"}, {"stat", "statm", "status"}, {"stat", "status", "sockets"},
           {"stat", "statm", "status", "sockets"}, {"stat"}, {"stat", "sockets"})

# Kept procfs fds (live C path): stat and status of each process stay open between scans and are
# read again with pread at offset 0, which saves the kernel's path walk, open and close (~7 ms
# per 1,000 processes, a third of the scan). What it costs: 2 fds per process (at most
# KEEP_FDS_MAX and a quarter of RLIMIT_NOFILE's soft limit, whichever is lower) and the kernel
# memory of each open seq_file (its struct file and a page of buffer: ~9 kB per process, ~9 MB
# at 1,000). Correctness: see _procscan.c (a kept fd of an exited process reads ESRCH, never a
# reused PID's data; the text is checked to name the PID). KEEP_FDS = False turns it off;
# close_kept() closes them (a forked child closes its copies at once).
KEEP_FDS = True
KEEP_FDS_MAX = 4096
_kept: dict[str, dict[int, tuple[int, int]]] = {}  # root base -> {pid: (stat fd, status fd)}
_kept_lock = _thread.allocate_lock()
_kept_pid = os.getpid()


def kept_fds() -> int:
    """How many procfs fds the scan keeps open now."""
    return sum(2 * len(d) for d in _kept.values())


def close_kept() -> None:
    """Close every kept procfs fd (the next scan opens and keeps them again if KEEP_FDS)."""
    with _kept_lock:
        _close_kept()


def _close_kept() -> None:
    for d in _kept.values():
        for fds in d.values():
            for fd in fds:
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
    _kept.clear()


def _after_fork_in_child() -> None:
    global _kept_lock, _kept_pid
    _kept_lock = _thread.allocate_lock()  # a fork while another thread scanned leaves it held
    _kept_pid = os.getpid()
    _close_kept()  # the child's copies: the parent's stay open


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _scan_c(root: Root, pids: list[int], spec: tuple, with_statm: bool, with_socks: bool,
            listed: bool, with_status: bool = True) -> list:
    """_procscan.scan, with the kept fds when live (and no other thread is using them)."""
    global _kept_pid
    lock = _kept_lock
    if not (root.live and KEEP_FDS and lock.acquire(False)):
        return _procscan.scan(root.base, pids, root.live, spec, with_statm, with_socks, None, 0,
                              with_status)
    try:
        if _kept_pid != os.getpid():  # forked without os.register_at_fork's hook (os.fork in C)
            _kept.clear()  # not closed: the numbers may name the child's own files by now
            _kept_pid = os.getpid()
        cache = _kept.setdefault(root.base, {})
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cap = KEEP_FDS_MAX if soft == resource.RLIM_INFINITY else min(KEEP_FDS_MAX, soft // 4)
        room = max(0, cap - kept_fds())
        out = _procscan.scan(root.base, pids, True, spec, with_statm, with_socks, cache, room,
                             with_status)
        if listed and cache:
            # PIDs no longer listed: their processes are gone (an fd kept for one reads ESRCH)
            for pid in cache.keys() - set(pids):
                for fd in cache.pop(pid):
                    if fd >= 0:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
        return out
    finally:
        lock.release()
_C_SPEC: tuple | None = None
_KIND = {"int": 0, "kb": 1, "ids": 2, "state": 3}


def _c_spec() -> tuple:
    """What _procscan.scan needs to give exactly the Python parsers' objects: their classes,
    field names, stat's picked token indices, status's typed keys (from the parsers' own tables)."""
    global _C_SPEC
    typed = tuple((k.encode(), a, _KIND[kind]) for k, a, kind in _status._TYPED)
    _C_SPEC = (PidStat, _stat._NAMES, tuple(_stat._PICK(range(_stat._FULL))), _stat._REQUIRED,
               PidStatm, _statm._NAMES, PidStatus, dict(_status._NONE), typed)
    return _C_SPEC


def _careful(root, pid, base, read, text_parts, other_parts, blank, part_missing) -> dict | None:
    """Read one PID part by part, recording what is unavailable. None: the process is gone."""
    got = blank.copy()
    got["pid"] = pid
    miss: list[str] | None = None
    # (attribute, part name, how to get it): text files read and parsed here, others by reader
    jobs = [(part, part, lambda p=base + fname, parse=parse: parse(read(p), p))
            for part, fname, parse in text_parts]
    jobs += [(attr, part, lambda reader=reader: reader(root, pid, base))
             for attr, part, reader in other_parts]
    for attr, part, job in jobs:
        try:
            got[attr] = job()
        except Unavailable as u:
            if u.reason == EXITED:
                # ESRCH also means "no address space" (kernel thread, zombie): check
                if not root.exists(base[:-1]):
                    return None
                miss = _no_mm(miss, part)
            else:
                miss = _note(miss, part_missing, part, u.reason)
        except ParseError as e:
            # an exiting process can leave a short or empty read behind
            if not root.exists(base[:-1]):
                return None
            miss = _note(miss, part_missing, part, f"malformed: {e}")
    if miss:
        got["missing"] = tuple(miss)
    return got


NO_MM = "no address space (kernel thread or zombie)"


def _no_mm(miss: list[str] | None, part: str) -> list[str]:
    # not missing data (a kernel thread has no memory map): noted on the Process only
    if miss is None:
        miss = []
    miss.append(f"{part}: {NO_MM}")
    return miss


def _note(miss: list[str] | None, part_missing: dict[str, list], part: str, reason: str) -> list[str]:
    if miss is None:
        miss = []
    miss.append(f"{part}: {reason}")
    pm = part_missing.get(part)
    if pm is None:
        part_missing[part] = [reason, 1]
    else:
        pm[1] += 1
    return miss


# ---- parts read after the scan: per-mapping files, and parts for a chosen few ------------------

# what a Few (collect.plan.Few) ranks by: top's sort keys, largest first (None ranks last)
RANKS = {
    "rss": lambda p: p.res_kb,
    "virt": lambda p: p.virt_kb,
    "shr": lambda p: p.shr_kb,
    "swap": lambda p: p.status.vm_swap_kb if p.status is not None else None,
    "oom": lambda p: p.oom.score if p.oom is not None else None,
}
# read(2) size for maps and smaps. The kernel hands out one seq_file page (~4 kB of whole
# records) per read(2) whatever the size asked, so a larger buffer saves no call: smaps of 5,000
# mappings is ~1,000 reads either way. It must stay below glibc's mmap threshold (128 kB): each
# read allocates a bytes object of this size first, and at 1 MiB every one was a fresh mmap,
# page-faulted and unmapped again: the first smaps read of a process took 34 ms instead of 22.
MAPS_CHUNK = 1 << 16
# smaps: 3 kB reads. Asked for more, the kernel prints the mapping whose ~800-byte record no
# longer fits its 4 kB page and throws it away (printed again by the next read); asked for 3 kB
# it stops before: 5,000 mappings took 17.4 ms in 3 kB reads through LiveRoot.read_bytes, 19.2
# ms in 64 kB reads (collect/pmap_live.SMAPS_CHUNK, the same for `ksight pmap`'s fast path)
SMAPS_CHUNK = 3072


def _read_maps(root: Root, pid: int, base: str) -> _maps.Maps:
    """proc/PID/maps; on a capture that holds only smaps (`ksight capture --pid`), its region
    headers, which are the maps lines (the kernel prints both through show_map_vma)."""
    p = base + "maps"
    try:
        text = root.read_bytes(p, chunk=MAPS_CHUNK).decode("utf-8", "replace")
    except Unavailable:
        if root.live or not root.exists(base + "smaps"):
            raise
        sm = _read_smaps(root, pid, base)
        return _maps.Maps(tuple(_maps.MapRegion(r.start, r.end, r.perms, r.offset, r.dev, r.inode,
                                          r.pathname) for r in sm.regions))
    return _maps.parse(text, p)


def _read_smaps(root: Root, pid: int, base: str) -> Smaps:
    p = base + "smaps"
    return _smaps.parse_fast(root.read_bytes(p, chunk=SMAPS_CHUNK), p)


def _read_exe(root: Root, pid: int, base: str) -> str | None:
    return root.readlink(base + "exe") or None


def _read_text_part(part: str):
    fname, parse = _TEXT_PARTS[part]

    def reader(root: Root, pid: int, base: str):
        p = base + fname
        return parse(root.read_text(p), p)
    return reader


_LATER = {"maps": _read_maps, "smaps": _read_smaps, "exe": _read_exe}
_LATER_ATTR = {"sockets": "socket_inodes"}


def _part_reader(part: str):
    if part in _LATER:
        return _LATER[part]
    if part in _TEXT_PARTS:
        return _read_text_part(part)
    return _OTHER_PARTS[part]


def _add_parts(root: Root, procs: dict[int, Process], chosen, parts: tuple[str, ...],
               part_missing: dict[str, list]) -> None:
    """Read `parts` for the processes `chosen` (pids of `procs`) and set them on each Process.
    A part that cannot be read is None and named in Process.missing (and counted in
    part_missing); a process without an address space (kernel thread, zombie: its maps and smaps
    are empty, it has no exe) gets empty maps and no exe, noted on the Process only."""
    readers = [(part, _LATER_ATTR.get(part, part), _part_reader(part)) for part in parts]
    for pid in chosen:
        proc = procs.get(pid)
        if proc is None:
            continue
        d = proc.__dict__
        base = f"proc/{pid}/"
        miss = None
        for part, attr, reader in readers:
            if d.get(attr) is not None:
                continue  # read already (by the scan, or an earlier Few)
            try:
                d[attr] = reader(root, pid, base)
            except Unavailable as u:
                if proc.kernel_thread or proc._no_mm():
                    miss = _no_mm(miss, part)
                elif u.reason == EXITED or not root.exists(base[:-1]):
                    miss = _note(miss, part_missing, part, "process exited after the scan")
                else:
                    miss = _note(miss, part_missing, part, u.reason)
            except ParseError as e:
                why = ("process exited after the scan" if not root.exists(base[:-1])
                       else f"malformed: {e}")
                miss = _note(miss, part_missing, part, why)
        if miss:
            d["missing"] = tuple(d.get("missing") or ()) + tuple(miss)


def chosen(procs: dict[int, Process], few) -> list[int]:
    """The PIDs a Few picks: those it names that the table holds, then the first `few.n` by
    `few.by`, largest first, ties by PID."""
    named = [pid for pid in few.pids if pid in procs]
    if not few.n:
        return named
    key = RANKS[few.by]

    def order(p):
        v = key(p)
        return (-(v if v is not None else -1), p.pid)

    return list(dict.fromkeys(named + [p.pid for p in sorted(procs.values(), key=order)[:few.n]]))


def add_few(root: Root, procs: dict[int, Process], few, missing: list[Missing]) -> None:
    """Read each Few's parts for the processes it picks (collect.plan.Few), after the scan."""
    part_missing: dict[str, list] = {}
    for f in few:
        if (f.n or f.pids) and procs:
            _add_parts(root, procs, chosen(procs, f), tuple(f.parts), part_missing)
    for part, (reason, n) in part_missing.items():
        missing.append(Missing(f"processes:{part}", f"{reason} ({n} processes)"))


# ---- ranking: what every process is worth, from its stat alone ---------------------------------

PF_KTHREAD = 0x00200000


@dataclass(frozen=True)
class Rank:
    """What ranks a process for the recorder (record/recorder.py): its CPU ticks so far
    (utime + stime, all threads), its start time (a reused PID is another process), its resident
    set (stat's rss: the same mm counters as status's VmRSS) and whether it is a kernel thread."""

    ticks: int
    starttime: int
    rss_kb: int
    kernel_thread: bool


_rank_kept: dict[int, int] = {}  # pid -> kept fd of proc/PID/stat (live C path of rank)
_rank_lock = _thread.allocate_lock()


def close_rank_kept() -> None:
    """Close the stat fds rank keeps open between calls."""
    for fd in _rank_kept.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _rank_kept.clear()


def _rank_after_fork() -> None:
    global _rank_lock
    _rank_lock = _thread.allocate_lock()
    close_rank_kept()  # the child's copies


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rank_after_fork)


def rank(root: Root, page_size: int | None = None) -> dict[int, Rank]:
    """Every process's Rank, from proc/PID/stat alone: what `ksight record` needs of all of
    them to choose the few it stores (stat costs the kernel ~40 % of stat + status, and no
    Process is built). Live, with ksight._procscan: in C, the stat fds kept open between calls
    (as scan's, KEEP_FDS; closed by close_rank_kept); any PID C does not answer for, and every
    PID on another Root, is read and parsed by the reference parser (sources/proc_pid/stat.py).
    A process gone meanwhile is left out."""
    if page_size is None:
        page_size = os.sysconf("SC_PAGE_SIZE") if root.live else 4096
    kb = page_size // 1024 or 1
    try:
        pids = list_pids(root)
    except Unavailable:
        return {}
    out: dict[int, Rank] = {}
    got: list = [None] * len(pids)
    fn = getattr(_procscan, "stat_ranks", None)
    if fn is not None and type(root) is LiveRoot and root.live and _rank_lock.acquire(False):
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            cap = KEEP_FDS_MAX if soft == resource.RLIM_INFINITY else min(KEEP_FDS_MAX, soft // 4)
            room = max(0, cap - kept_fds() - len(_rank_kept)) if KEEP_FDS else 0
            got = fn(root.base, pids, _rank_kept, room)
            for pid in _rank_kept.keys() - set(pids):  # gone: its fd reads ESRCH
                try:
                    os.close(_rank_kept.pop(pid))
                except OSError:
                    pass
        finally:
            _rank_lock.release()
    read = None
    new = _new
    for pid, r in zip(pids, got):
        if r.__class__ is tuple:
            ticks, start, rss, flags = r
        else:
            if read is None:
                read = root.text_reader(one_shot=True)
            p = f"proc/{pid}/stat"
            try:
                st = _stat.parse(read(p), p)
            except (Unavailable, ParseError):
                continue  # gone (or not a process's stat any more): not ranked
            ticks = (st.utime_ticks or 0) + (st.stime_ticks or 0)
            start, rss, flags = st.starttime_ticks, st.rss_pages or 0, st.flags or 0
        o = new(Rank)
        o.__dict__.update(ticks=ticks, starttime=start, rss_kb=rss * kb,
                          kernel_thread=bool(flags & PF_KTHREAD))
        out[pid] = o
    return out
