"""/proc/PID/maps: the process's memory mappings, one per line:
`start-end perms offset dev inode [pathname]` (pathname may hold spaces, or be '[heap]',
'[stack]', '[vdso]', '' for anonymous memory, and may end in ' (deleted)').
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...errors import ParseError
from ...fs import Root
from .._text import bad, require_complete, to_hex, to_int

PATH = "proc/PID/maps"


def path(pid: int) -> str:
    return f"proc/{pid}/maps"


@dataclass(frozen=True)
class MapRegion:
    start: int
    end: int
    perms: str  # "r-xp": read, write, exec, p(rivate)/s(hared)
    offset: int
    dev: str  # "fd:01" (major:minor, hex)
    inode: int
    pathname: str

    @property
    def size_bytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Maps:
    regions: tuple[MapRegion, ...]


def parse_header(line: str, path: str, lineno: int | None) -> MapRegion:
    """One maps line (also the header line of each smaps region)."""
    toks = line.split(None, 5)
    if len(toks) < 5:
        raise ParseError(path, lineno, line, "expected 'start-end perms offset dev inode [path]'")
    a, sep, b = toks[0].partition("-")
    if not sep:
        raise bad(path, lineno, line, "expected hex addresses, hex offset and a decimal inode")
    start, end = to_hex(a, path, lineno, line), to_hex(b, path, lineno, line)
    offset, inode = to_hex(toks[2], path, lineno, line), to_int(toks[4], path, lineno, line)
    if len(toks[1]) != 4 or ":" not in toks[3]:
        raise ParseError(path, lineno, line, "expected perms like 'r-xp' and dev like 'fd:01'")
    return MapRegion(start, end, toks[1], offset, toks[3], inode, toks[5].strip() if len(toks) > 5 else "")


def parse(text: str, path: str = PATH) -> Maps:
    require_complete(text, path)
    regions = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            regions.append(parse_header(line, path, lineno))
    return Maps(tuple(regions))


def read(root: Root, pid: int) -> Maps:
    p = path(pid)
    return parse(root.read_text(p), p)


def count(text: str) -> int:
    """How many mappings (VMAs) a maps text lists: its lines. Cheaper than parse when only the
    number matters (`ksight top`'s VMA column)."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def read_count(root: Root, pid: int) -> int:
    return count(root.read_text(path(pid)))
