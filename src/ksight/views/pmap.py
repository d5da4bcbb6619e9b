"""`pmap -x` from /proc/PID/smaps: Address, Kbytes, RSS, Dirty, Mode, Mapping, with totals.

The numbers are procps-ng pmap's (src/pmap.c one_proc, the -x branch), for the same smaps text:
  Address  the mapping's start
  Kbytes   (end - start) >> 10
  RSS      Rss
  Dirty    Shared_Dirty + Private_Dirty
  Mode     perms r/w/x, then 's' for a shared mapping ('-' for private), then '-' (pmap's
           reserved-swap column, always '-' on Linux)
  Mapping  the file's base name; "[ shmid=0x<inode> ]" for a SysV segment; "[ stack ]" for the
           main stack; "[ anon ]" for every other mapping without a file (heap, vdso, vvar,
           anonymous mmaps), as pmap prints them
  totals   the sums of Kbytes, RSS and Dirty.

On top of pmap, each mapping is classed (`Mapping.kind`, `shared`, `anonymous`):
  shared    the mapping is MAP_SHARED (perms[3] == 's'), else private (copy on write)
  anonymous no file behind it (heap, stack, anonymous mmap, vdso), else file-backed
  kind      heap, stack, anon, vdso (the kernel's [vdso]/[vvar]/[vsyscall] pages), shm
            (shared memory: /dev/shm files, SysV segments, memfd, shared anonymous memory, which
            the kernel shows as "/dev/zero (deleted)": all of it is shmem/tmpfs), exe (the
            program's own file: proc/PID/exe, else the first file mapping), lib (a file whose
            name holds ".so"), file (any other mapped file).

Where the smaps comes from: the process table of a snapshot taken with the parts PARTS (smaps
and the exe link: collect.processes), live or from a capture that recorded that process's smaps
(`ksight capture --pid PID`). A snapshot without it cannot answer: `Unavailable` names what is
missing and why, and no number is made up.

Views return data: text lives in render/pmap_text.py.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import Unavailable

COLUMNS = ("Address", "Kbytes", "RSS", "Dirty", "Mode", "Mapping")
KINDS = ("heap", "stack", "anon", "vdso", "shm", "exe", "lib", "file")
_KERNEL_PAGES = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]",
                 "[vectors]")


# eq=False: nothing compares mappings or maps (no __eq__/__hash__ built at import: ~0.1 ms each
# of a `ksight pmap` run's start-up); identity equality, as for any object
@dataclass(frozen=True, eq=False)
class Mapping:
    """One row of pmap -x, with its class (see the module doc)."""

    start: int
    end: int
    kbytes: int
    rss_kb: int | None  # None: the kernel printed no Rss line for it
    dirty_kb: int | None  # Shared_Dirty + Private_Dirty
    mode: str  # pmap's 5 characters: "r-x--", "rw-s-"
    name: str  # pmap's Mapping column
    path: str  # the kernel's pathname ('' for anonymous memory)
    perms: str  # the kernel's 4 characters
    inode: int
    shared: bool
    anonymous: bool
    kind: str  # one of KINDS
    swap_kb: int | None = None
    pss_kb: int | None = None


@dataclass(frozen=True, eq=False)
class Pmap:
    """pmap -x of one process: its mappings and their totals."""

    pid: int
    command: str  # pmap's first line: the command line, else [comm]
    mappings: tuple[Mapping, ...]
    total_kbytes: int
    total_rss_kb: int
    total_dirty_kb: int
    exe: str | None  # proc/PID/exe when it could be read
    notes: tuple[str, ...] = ()

    def by_kind(self) -> dict[str, dict[str, int]]:
        """kind -> {"mappings", "kbytes", "rss_kb", "dirty_kb"}: where the memory is."""
        out: dict[str, dict[str, int]] = {}
        for m in self.mappings:
            d = out.setdefault(m.kind, {"mappings": 0, "kbytes": 0, "rss_kb": 0, "dirty_kb": 0})
            d["mappings"] += 1
            d["kbytes"] += m.kbytes
            d["rss_kb"] += m.rss_kb or 0
            d["dirty_kb"] += m.dirty_kb or 0
        return out


def mode(perms: str) -> str:
    """pmap's Mode: rwx, 's' when shared ('-' when private), '-'."""
    return perms[:3] + ("s" if perms[3:4] == "s" else "-") + "-"


def pmap_name(path: str, dev: str, inode: int) -> str:
    """pmap -x's Mapping column for a kernel pathname (procps mapping_name)."""
    major = dev.partition(":")[0]
    if path.startswith("/SYSV") and major.strip("0") == "":
        return f"  [ shmid=0x{inode:x} ]"
    cut = path.rfind("/")
    if cut >= 0:
        return path[cut + 1:] or path[cut:]
    if path == "[stack]":
        return "  [ stack ]"
    return "  [ anon ]"


def classify(path: str, perms: str, inode: int, exe: str | None) -> tuple[bool, str]:
    """(anonymous, kind) of one mapping; see the module doc."""
    shared = perms[3:4] == "s"
    if path == "[heap]":
        return True, "heap"
    if path.startswith("[stack"):
        return True, "stack"
    if path in _KERNEL_PAGES:
        return True, "vdso"
    if not path or (path.startswith("[") and path.endswith("]")):  # [anon:name] too
        return True, "anon"
    if path.startswith("/dev/zero") and shared:  # MAP_SHARED|MAP_ANONYMOUS: shmem
        return True, "shm"
    if path.startswith(("/dev/shm/", "/SYSV", "/memfd:")):
        return False, "shm"
    if exe is not None and path == exe:
        return False, "exe"
    base = path.rsplit("/", 1)[-1]
    if ".so" in base:
        return False, "lib"
    return False, "file"


def mappings_of(sm, exe: str | None) -> tuple[list[Mapping], bool]:
    """The mappings of one parsed smaps (sources.proc_pid.smaps.Smaps), with pmap's numbers.
    Returns (mappings, exe_guessed): when exe is None the first file mapping is taken as the
    executable (the loader maps it first)."""
    out: list[Mapping] = []
    append = out.append
    guessed = False
    # (path, perms, dev) -> a Mapping's __dict__ with the columns that depend on nothing else
    # filled in, in field order: each mapping copies it and sets its numbers. Not keyed by inode:
    # shared anonymous memory ("/dev/zero (deleted)") has one inode per mapping, and 5,000 of
    # them classified one by one cost ~10 ms; only a SysV segment's name holds its inode.
    cache: dict = {}
    new, set_dict = object.__new__, object.__setattr__
    for r in sm.regions:
        p = r.pathname
        if exe is None and p.startswith("/") and r.inode:
            exe, guessed = p, True
            cache.clear()
        key = (p, r.perms, r.dev)
        tmpl = cache.get(key)
        if tmpl is None:
            anon, kind = classify(p, r.perms, r.inode, exe)
            tmpl = cache[key] = {
                "start": 0, "end": 0, "kbytes": 0, "rss_kb": None, "dirty_kb": None,
                "mode": mode(r.perms), "name": pmap_name(p, r.dev, r.inode), "path": p,
                "perms": r.perms, "inode": 0, "shared": r.perms[3:4] == "s",
                "anonymous": anon, "kind": kind, "swap_kb": None, "pss_kb": None}
        sd, pd = r.fields.get("Shared_Dirty"), r.private_dirty_kb
        d = tmpl.copy()
        d["inode"] = inode = r.inode
        if p.startswith("/SYSV"):
            d["name"] = pmap_name(p, r.dev, inode)
        d["start"] = start = r.start
        d["end"] = end = r.end
        d["kbytes"] = (end - start) >> 10
        d["rss_kb"] = r.rss_kb
        d["dirty_kb"] = None if sd is None and pd is None else (sd or 0) + (pd or 0)
        d["swap_kb"] = r.swap_kb
        d["pss_kb"] = r.pss_kb
        # a frozen dataclass given its __dict__: 5,000 __init__ calls of 15 fields cost ~15 ms
        m = new(Mapping)
        set_dict(m, "__dict__", d)
        append(m)
    return out, guessed


def parse_smaps(text: str, path: str, exe: str | None) -> tuple[list[Mapping], bool]:
    """mappings_of() for one smaps text (parsed by sources.proc_pid.smaps, the reference)."""
    from ..sources.proc_pid.smaps import parse

    return mappings_of(parse(text, path), exe)


def build(proc, command: str | None = None) -> Pmap:
    """pmap -x of one process of a snapshot's table (collect.processes.Process), read with the
    parts "smaps" and "exe" (PARTS). Raises Unavailable when its smaps was not read (a capture
    without it, permission, the process gone): the reason is the one the scan recorded."""
    if proc.smaps is None:
        why = next((m.partition(": ")[2] for m in proc.missing if m.startswith("smaps:")),
                   "not read")
        raise Unavailable(f"proc/{proc.pid}/smaps", why)
    maps, guessed = mappings_of(proc.smaps, proc.exe)
    notes = []
    if guessed:
        notes.append("proc/PID/exe unreadable: the first file mapping is taken as the executable")
    if not maps:
        notes.append("no mappings: a kernel thread or a zombie has no address space")
    tk = tr = td = 0
    for m in maps:
        tk += m.kbytes
        tr += m.rss_kb or 0
        td += m.dirty_kb or 0
    return Pmap(proc.pid, command if command is not None else command_of(proc), tuple(maps),
                tk, tr, td, proc.exe, tuple(notes))


# what `ksight pmap` asks the collector for, for its one process
PARTS = ("stat", "status", "cmdline", "exe", "smaps")


def mapping_dicts(pm: Pmap) -> list[dict]:
    """The mappings as plain dicts, keys in field order (the generic dataclass walk costs ~0.1 s
    per 5,000, a getattr per field ~9 ms). A Mapping's __dict__ holds exactly its fields, in
    their order (made by __init__, or by mappings_of from a template in field order): a copy
    of it is the dict, ~0.5 ms per 5,000."""
    return [m.__dict__.copy() for m in pm.mappings]


def command_of(proc) -> str:
    """pmap's first line after 'PID:': the command line, else [comm] (kernel threads)."""
    from .pmap_fast import command_text

    if proc is not None and proc.cmdline:
        return command_text(proc.cmdline)
    comm = getattr(proc, "comm", None)
    # control characters (a newline in an argument) as '?', as procps prints them
    return command_text((f"[{comm}]" if comm else "?",))


__all__ = ["Mapping", "Pmap", "build", "mappings_of", "parse_smaps", "PARTS", "classify", "pmap_name", "mode", "COLUMNS",
           "KINDS", "command_of"]
