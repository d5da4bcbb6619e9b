"""/proc/sysvipc/shm: System V shared memory segments (ipc/shm.c, sysvipc_shm_proc_show).

The first line names the columns:
    key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime [rss swap]
rss and swap (bytes) were added in 2.6.27-ish; older kernels print 14 columns and those fields
are None. key is printed signed decimal, perms in octal (01000 = SHM_DEST: marked for removal,
01000 | 0600 prints as 1600). Columns are matched by the header's names, so a column a future
kernel adds is ignored rather than misread.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import bad, clip, numbered_lines, require_complete, to_int

PATH = "proc/sysvipc/shm"
SHM_DEST = 0o1000
SHM_LOCKED = 0o2000

_REQUIRED = ("key", "shmid", "perms", "size", "cpid", "lpid", "nattch", "uid", "gid")


@dataclass(frozen=True)
class ShmSegment:
    key: int
    shmid: int
    perms: int  # mode bits incl. SHM_DEST / SHM_LOCKED (the file prints them in octal)
    size_bytes: int
    cpid: int
    lpid: int
    nattch: int
    uid: int
    gid: int
    rss_bytes: int | None = None
    swap_bytes: int | None = None
    cuid: int | None = None
    cgid: int | None = None
    atime: int | None = None  # epoch seconds, 0 = never
    dtime: int | None = None
    ctime: int | None = None

    @property
    def marked_for_removal(self) -> bool:
        return bool(self.perms & SHM_DEST)

    @property
    def locked(self) -> bool:
        return bool(self.perms & SHM_LOCKED)


@dataclass(frozen=True)
class SysvShm:
    segments: tuple[ShmSegment, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(s.size_bytes for s in self.segments)

    @property
    def rss_bytes(self) -> int | None:
        vals = [s.rss_bytes for s in self.segments if s.rss_bytes is not None]
        return sum(vals) if len(vals) == len(self.segments) and vals else None

    @property
    def swap_bytes(self) -> int | None:
        vals = [s.swap_bytes for s in self.segments if s.swap_bytes is not None]
        return sum(vals) if len(vals) == len(self.segments) and vals else None


_ATTR = {"size": "size_bytes", "rss": "rss_bytes", "swap": "swap_bytes"}
_OPTIONAL = ("rss", "swap", "cuid", "cgid", "atime", "dtime", "ctime")


def parse(text: str, path: str = PATH) -> SysvShm:
    require_complete(text, path)
    lines = list(numbered_lines(text))
    if not lines:
        raise ParseError(path, None, None, "empty file (the kernel always prints the header)")
    hlineno, header = lines[0]
    cols = header.split()
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        raise ParseError(path, hlineno, header, f"header lacks columns {missing}")
    idx = {c: cols.index(c) for c in _REQUIRED + _OPTIONAL if c in cols}
    segs = []
    for lineno, line in lines[1:]:
        toks = line.split()
        if len(toks) != len(cols):
            raise ParseError(path, lineno, line, f"expected {len(cols)} columns as the header says, got {len(toks)}")
        kw = {}
        for c, i in idx.items():
            if c == "perms":
                t = toks[i]
                if not (0 < len(t) <= 6 and t.isascii() and t.isdigit() and "8" not in t and "9" not in t):
                    raise bad(path, lineno, line, f"perms not octal: {clip(t)}")
                kw["perms"] = int(t, 8)
            else:
                # key is printed %d (IPC keys may be negative); the rest %d ids or %lu/%llu
                kw[_ATTR.get(c, c)] = to_int(toks[i], path, lineno, line, signed=c == "key")
        segs.append(ShmSegment(**kw))
    return SysvShm(tuple(segs))


def read(root: Root) -> SysvShm:
    return parse(root.read_text(PATH))
