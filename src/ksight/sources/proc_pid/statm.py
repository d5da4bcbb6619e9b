"""/proc/PID/statm: memory sizes in pages: size resident shared text lib data dt.

This is where top gets VIRT (size), RES (resident), SHR (shared), CODE (text) and DATA (data:
data + stack). lib and dt are always 0 since Linux 2.6. Multiply by the page size
(HostInfo.page_size) for bytes.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...errors import ParseError
from ...fs import Root
from .._text import U64_MAX, require_complete, to_int

PATH = "proc/PID/statm"


def path(pid: int) -> str:
    return f"proc/{pid}/statm"


@dataclass(frozen=True)
class PidStatm:
    size_pages: int
    resident_pages: int
    shared_pages: int  # file-backed + shmem resident pages (RssFile + RssShmem)
    text_pages: int
    lib_pages: int
    data_pages: int
    dirty_pages: int


_NAMES = ("size_pages", "resident_pages", "shared_pages", "text_pages", "lib_pages", "data_pages",
          "dirty_pages")
_new = object.__new__


def parse(text: str, path: str = PATH) -> PidStatm:
    if text[-1:] != "\n":
        require_complete(text, path)
    toks = text.split()
    if len(toks) != 7:
        raise ParseError(path, 1, text.partition("\n")[0], f"expected 7 numbers, got {len(toks)}")
    digits = "".join(toks)  # %lu each: cheap strictness first, to_int names a bad one
    vals = None
    if digits.isascii() and digits.isdigit() and len(digits) < 4000:
        vals = list(map(int, toks))
        if max(vals) > U64_MAX:
            vals = None
    if vals is None:
        line = text.partition("\n")[0]
        vals = [to_int(t, path, 1, line) for t in toks]
    o = _new(PidStatm)  # filled through __dict__: cheaper than the frozen __init__ (hot path)
    o.__dict__.update(zip(_NAMES, vals))
    return o


def read(root: Root, pid: int) -> PidStatm:
    p = path(pid)
    return parse(root.read_text(p), p)
