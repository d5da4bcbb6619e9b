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

Where the smaps text comes from: the snapshot's root (live /proc, or the capture's snapshot
directory). A capture taken without per-mapping smaps cannot answer: `Unavailable` names what is
missing, and no number is made up.

Views return data: text lives in render/pmap_text.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ParseError, Unavailable
from ..fs import Root

COLUMNS = ("Address", "Kbytes", "RSS", "Dirty", "Mode", "Mapping")
KINDS = ("heap", "stack", "anon", "vdso", "shm", "exe", "lib", "file")
_KERNEL_PAGES = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]",
                 "[vectors]")


@dataclass(frozen=True)
class Mapping:
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


@dataclass(frozen=True)
class Pmap:
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


def parse_smaps(text: str, path: str, exe: str | None) -> tuple[list[Mapping], bool]:
    """The mappings of one smaps text, with pmap's numbers. Returns (mappings, exe_guessed): when
    exe is None the first file mapping is taken as the executable (the loader maps it first)."""
    from ..sources._text import require_complete
    from ..sources.proc_pid.maps import parse_header

    require_complete(text, path)
    out: list[Mapping] = []
    head = None
    rss = sd = pd = swap = pss = None
    guessed = False

    def close():
        nonlocal exe, guessed
        if head is None:
            return
        p = head.pathname
        if exe is None and p.startswith("/") and head.inode:
            exe, guessed = p, True
        anon, kind = classify(p, head.perms, head.inode, exe)
        dirty = None if sd is None and pd is None else (sd or 0) + (pd or 0)
        out.append(Mapping(head.start, head.end, (head.end - head.start) >> 10, rss, dirty,
                           mode(head.perms), pmap_name(p, head.dev, head.inode), p, head.perms,
                           head.inode, head.perms[3:4] == "s", anon, kind, swap, pss))

    lineno = 0
    for line in text.split("\n"):
        lineno += 1
        if not line:
            continue
        c = line[0]
        if "A" <= c <= "Z":  # a "Key: value" line (hex addresses are lower case or digits)
            if head is None:
                raise ParseError(path, lineno, line, "field before the first mapping header")
            key, _, rest = line.partition(":")
            if key in _WANTED:
                tok = rest.split()
                if not tok or not tok[0].isdigit():
                    raise ParseError(path, lineno, line, "expected 'Name: N kB'")
                v = int(tok[0])
                if key == "Rss":
                    rss = v
                elif key == "Shared_Dirty":
                    sd = v
                elif key == "Private_Dirty":
                    pd = v
                elif key == "Swap":
                    swap = v
                else:
                    pss = v
            continue
        close()
        head = parse_header(line, path, lineno)
        rss = sd = pd = swap = pss = None
    close()
    return out, guessed


SMAPS_CHUNK = 4 << 20
_WANTED = frozenset(("Rss", "Shared_Dirty", "Private_Dirty", "Swap", "Pss"))


def _exe(root: Root, pid: int) -> str | None:
    try:
        link = root.readlink(f"proc/{pid}/exe")
    except (Unavailable, OSError, NotImplementedError):
        return None
    return link or None


def _read_large(root: Root, p: str) -> str:
    """smaps of 5,000 mappings is ~4 MB, handed out by the kernel a page or so per read(2).
    LiveRoot.read_bytes appends each piece to a bytes object (quadratic: 0.8 s for 4 MB);
    DirRoot.read_bytes (LiveRoot's base class, same results and errors on a live root) joins a
    list. Used for live roots until LiveRoot's loop joins too."""
    from ..fs import DirRoot

    if root.live and isinstance(root, DirRoot):
        return DirRoot.read_bytes(root, p, chunk=SMAPS_CHUNK).decode("utf-8", "replace")
    return root.read_text(p)


def build(root: Root, pid: int, command: str) -> Pmap:
    """pmap -x of PID from root. Raises Unavailable when smaps cannot be read (a capture
    without it, permission, the process gone)."""
    p = f"proc/{pid}/smaps"
    text = _read_large(root, p)
    exe = _exe(root, pid)
    maps, guessed = parse_smaps(text, p, exe)
    notes = []
    if guessed:
        notes.append("proc/PID/exe unreadable: the first file mapping is taken as the executable")
    if not maps:
        notes.append("no mappings: a kernel thread or a zombie has no address space")
    return Pmap(pid, command, tuple(maps), sum(m.kbytes for m in maps),
                sum(m.rss_kb or 0 for m in maps), sum(m.dirty_kb or 0 for m in maps), exe,
                tuple(notes))


def mapping_dicts(pm: Pmap) -> list[dict]:
    """The mappings as plain dicts (the generic dataclass walk costs ~0.1 s per 5,000)."""
    names = [f.name for f in fields(Mapping)]
    return [{n: getattr(m, n) for n in names} for m in pm.mappings]


def command_of(proc) -> str:
    """pmap's first line after 'PID:': the command line, else [comm] (kernel threads)."""
    if proc is not None and proc.cmdline:
        text = " ".join(proc.cmdline)
    else:
        comm = getattr(proc, "comm", None)
        text = f"[{comm}]" if comm else "?"
    # control characters (a newline in an argument) as '?', as procps prints them
    return "".join(c if c.isprintable() else "?" for c in text)


__all__ = ["Mapping", "Pmap", "build", "parse_smaps", "classify", "pmap_name", "mode", "COLUMNS",
           "KINDS", "command_of"]
