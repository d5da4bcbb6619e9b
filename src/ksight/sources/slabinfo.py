"""/proc/slabinfo: kernel slab caches (mode 0400: only root can read it; others get
Unavailable("permission denied") from the Root).

Version 2.x (every kernel since 2.6):
    name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>
         : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
    (SLAB with CONFIG_DEBUG_SLAB adds ": globalstat ..." and ": cpustat ..." sections: skipped.)
Version 1.1 (2.4 kernels):
    name <active_objs> <num_objs> <objsize> <active_slabs> <num_slabs> <pagesperslab> [: limit batch]
    objperslab is not printed there (None).

The parser is pure and knows no page size: `objs_bytes` is num_objs * objsize; the memory a cache
holds is `slab_bytes(page_size)` = num_slabs * pagesperslab * page_size (what PCP calls
mem.slabinfo.slabs.total_size).
"""

from __future__ import annotations

import re
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/slabinfo"
_SEP = re.compile(r"\s+:\s+|\s+:$")


@dataclass(frozen=True)
class SlabCache:
    name: str
    active_objs: int
    num_objs: int
    objsize: int  # bytes
    objperslab: int | None
    pagesperslab: int
    active_slabs: int
    num_slabs: int
    sharedavail: int | None = None
    limit: int | None = None
    batchcount: int | None = None
    sharedfactor: int | None = None

    @property
    def objs_bytes(self) -> int:
        return self.num_objs * self.objsize

    @property
    def active_objs_bytes(self) -> int:
        return self.active_objs * self.objsize

    def slab_bytes(self, page_size: int) -> int:
        """Memory held by the cache's slabs (num_slabs * pagesperslab pages)."""
        return self.num_slabs * self.pagesperslab * page_size


@dataclass(frozen=True)
class Slabinfo:
    version: str
    caches: dict[str, SlabCache] = field(default_factory=dict)

    def total_slab_bytes(self, page_size: int) -> int:
        return sum(c.slab_bytes(page_size) for c in self.caches.values())


def _sections(line: str) -> tuple[list[str], dict[str, list[str]]]:
    """Split 'a b c : tunables x y z : slabdata p q r' into (head tokens, {section: tokens})."""
    parts = _SEP.split(line)  # cache names may hold ':' ("iwl_cmd_pool:0000:04:00.0")
    head = parts[0].split()
    secs: dict[str, list[str]] = {}
    for p in parts[1:]:
        toks = p.split()
        if toks:
            secs[toks[0]] = toks[1:]
    return head, secs


def _row_v2(line: str, path: str, lineno: int) -> SlabCache:
    # Fast path for the line every kernel prints (mm/slab_common.c: 6 head fields,
    # ': tunables a b c : slabdata p q r'): same values as the general path below, which also
    # handles the unusual shapes and produces the errors.
    t = line.split()
    if len(t) == 16 and t[6] == ":" and t[7] == "tunables" and t[11] == ":" \
            and t[12] == "slabdata" and t[0] != ":":
        try:
            u = _plain
            return SlabCache(t[0], u(t[1]), u(t[2]), u(t[3]), u(t[4]), u(t[5]),
                             u(t[13]), u(t[14]), u(t[15]), u(t[8]), u(t[9]), u(t[10]))
        except ValueError:
            pass  # the general path names the bad token
    head, secs = _sections(line)
    if len(head) != 6:
        raise ParseError(path, lineno, line, f"expected name and 5 numbers before ':', got {len(head)} tokens")
    slabdata = secs.get("slabdata")
    if slabdata is None or len(slabdata) != 3:
        raise ParseError(path, lineno, line, "missing or short ': slabdata a b c' section")
    tun = secs.get("tunables")
    if tun is not None and len(tun) != 3:
        raise ParseError(path, lineno, line, "malformed ': tunables' section")

    def n(tok: str) -> int:
        return to_int(tok, path, lineno, line)

    return SlabCache(
        name=head[0], active_objs=n(head[1]), num_objs=n(head[2]), objsize=n(head[3]),
        objperslab=n(head[4]), pagesperslab=n(head[5]),
        active_slabs=n(slabdata[0]), num_slabs=n(slabdata[1]), sharedavail=n(slabdata[2]),
        limit=n(tun[0]) if tun else None, batchcount=n(tun[1]) if tun else None,
        sharedfactor=n(tun[2]) if tun else None,
    )


def _row_v1(line: str, path: str, lineno: int) -> SlabCache:
    head = _SEP.split(line)[0].split()
    if len(head) != 7:
        raise ParseError(path, lineno, line, f"expected name and 6 numbers (slabinfo 1.x), got {len(head)} tokens")
    v = [to_int(t, path, lineno, line) for t in head[1:]]
    return SlabCache(name=head[0], active_objs=v[0], num_objs=v[1], objsize=v[2], objperslab=None,
                     active_slabs=v[3], num_slabs=v[4], pagesperslab=v[5])


_FIELDS = ("name", "active_objs", "num_objs", "objsize", "objperslab", "pagesperslab",
           "limit", "batchcount", "sharedfactor", "active_slabs", "num_slabs", "sharedavail")
_INT_COLS = (1, 2, 3, 4, 5, 8, 9, 10, 13, 14, 15)  # of the 16 tokens, in _FIELDS order
_PREFIX = "slabinfo - version:"
_new = object.__new__

try:
    from .._procscan import slab_rows as _c_rows  # the optional C extension (setup.py)
except ImportError:  # not built: the Python fast path below does the same work
    _c_rows = None


def parse(text: str, path: str = PATH) -> Slabinfo:
    """Fast path for the usual file: a version 2.x header, the column header, then only rows of
    the 16 tokens every kernel prints (mm/slab_common.c: 'name a b c d e : tunables x y z :
    slabdata p q r'). Done in C (ksight._procscan.slab_rows) when the extension is built and
    the text is plain ASCII with plain numbers, else checked and converted a column at a time in
    Python (_parse_py). Anything else goes line by line (_parse_lines), which gives the same
    result and raises the errors."""
    if _c_rows is not None:
        r = _c_rows(text, SlabCache, _FIELDS)
        if r is not None:
            return Slabinfo(version=r[0], caches=r[1])
    return _parse_py(text, path)


def _plain(tok: str) -> int:
    """An unsigned the kernel printed (%lu/%u) below 10^19, else ValueError: the general path
    then names the token (to_int)."""
    if tok.isascii() and tok.isdigit() and len(tok) < 20:
        return int(tok)
    raise ValueError(tok)


def _parse_py(text: str, path: str = PATH) -> Slabinfo:
    """The Python fast path (what slab_rows does in C), falling back to _parse_lines."""
    lines = text.splitlines()
    if len(lines) > 2 and text[-1] == "\n" and lines[0].startswith(_PREFIX) and lines[1].startswith("#"):
        version = lines[0][len(_PREFIX):].strip()
        rows = [line.split() for line in lines[2:]]
        if version.split(".")[0] == "2" and set(map(len, rows)) == {16}:
            cols = list(zip(*rows))
            names = cols[0]
            if set(cols[6]) == set(cols[11]) == {":"} and set(cols[7]) == {"tunables"} \
                    and set(cols[12]) == {"slabdata"} and ":" not in names \
                    and not any(n.startswith("#") for n in names):
                # cheap strictness (what to_int checks): ASCII digits, under 20 of them
                plain = all(("".join(cols[i])).isascii() and ("".join(cols[i])).isdigit()
                            and max(map(len, cols[i])) < 20 for i in _INT_COLS)
                try:
                    if not plain:
                        raise ValueError
                    ints = [map(int, cols[i]) for i in _INT_COLS]
                    caches: dict[str, SlabCache] = {}
                    fields = _FIELDS
                    for vals in zip(names, *ints):
                        c = _new(SlabCache)  # frozen dataclass without 12 object.__setattr__
                        c.__dict__.update(zip(fields, vals))
                        caches[vals[0]] = c
                    return Slabinfo(version=version, caches=caches)
                except ValueError:
                    pass  # a token that is not a number: the reference names it
    return _parse_lines(text, path)


def _parse_lines(text: str, path: str = PATH) -> Slabinfo:
    """The line-by-line reference: every shape, and the ParseErrors."""
    require_complete(text, path)
    lines = list(numbered_lines(text))
    if not lines:
        raise ParseError(path, None, None, "empty file")
    lineno, first = lines[0]
    prefix = "slabinfo - version:"
    if not first.startswith(prefix):
        raise ParseError(path, lineno, first, "expected 'slabinfo - version: N.N' header")
    version = first[len(prefix):].strip()
    major = version.split(".")[0]
    if major == "2":
        row = _row_v2
    elif major == "1":
        row = _row_v1
    else:
        raise ParseError(path, lineno, first, f"unsupported slabinfo version {version!r}")
    caches: dict[str, SlabCache] = {}
    for lineno, line in lines[1:]:
        if line.lstrip().startswith("#"):
            continue  # the column header
        c = row(line, path, lineno)
        caches[c.name] = c
    return Slabinfo(version=version, caches=caches)


def read(root: Root) -> Slabinfo:
    return parse(root.read_text(PATH))
