"""/proc/PID/smaps (per mapping) and /proc/PID/smaps_rollup (the process total, 4.14+).

Both are "Name:  N kB" lines; smaps puts a maps-style header before each region and a
VmFlags line after it; smaps_rollup has one header ending in '[rollup]'. Absent fields are None:
Pss_Anon/Pss_File/Pss_Shmem appeared in 5.0 (rollup only), LazyFree in 4.12, SwapPss in 4.3,
ShmemPmdMapped in 4.8. Lines that are "Name: N" without a unit (THPeligible, ProtectionKey) are
kept in `fields` too. Unknown lines whose value is not a number are skipped.

Matching a region across two snapshots: a mapping keeps its start address for its lifetime
(mremap can move it, munmap+mmap can reuse it), so `Smaps.by_start()` and `match(a, b)` pair
regions by start; `Region.key` (pathname, perms, start) is stricter and also tells a reused
address apart when the mapping behind it changed.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Mapping

from ...errors import ParseError
from ...fs import Root
from .._text import require_complete, to_int
from .maps import parse_header

PATH = "proc/PID/smaps"
ROLLUP_PATH = "proc/PID/smaps_rollup"


def path(pid: int) -> str:
    return f"proc/{pid}/smaps"


def rollup_path(pid: int) -> str:
    return f"proc/{pid}/smaps_rollup"


_ROLLUP = {
    "Rss": "rss_kb", "Pss": "pss_kb", "Pss_Anon": "pss_anon_kb", "Pss_File": "pss_file_kb",
    "Pss_Shmem": "pss_shmem_kb", "Shared_Clean": "shared_clean_kb", "Shared_Dirty": "shared_dirty_kb",
    "Private_Clean": "private_clean_kb", "Private_Dirty": "private_dirty_kb",
    "Referenced": "referenced_kb", "Anonymous": "anonymous_kb", "LazyFree": "lazyfree_kb",
    "AnonHugePages": "anon_huge_pages_kb", "ShmemPmdMapped": "shmem_pmd_mapped_kb",
    "FilePmdMapped": "file_pmd_mapped_kb", "Shared_Hugetlb": "shared_hugetlb_kb",
    "Private_Hugetlb": "private_hugetlb_kb", "Swap": "swap_kb", "SwapPss": "swap_pss_kb",
    "Locked": "locked_kb",
}
_REGION = {
    "Size": "size_kb", "Rss": "rss_kb", "Pss": "pss_kb", "Private_Dirty": "private_dirty_kb",
    "Anonymous": "anonymous_kb", "Swap": "swap_kb", "Locked": "locked_kb",
}


@dataclass(frozen=True)
class SmapsRollup:
    rss_kb: int | None = None
    pss_kb: int | None = None
    pss_anon_kb: int | None = None
    pss_file_kb: int | None = None
    pss_shmem_kb: int | None = None
    shared_clean_kb: int | None = None
    shared_dirty_kb: int | None = None
    private_clean_kb: int | None = None
    private_dirty_kb: int | None = None
    referenced_kb: int | None = None
    anonymous_kb: int | None = None
    lazyfree_kb: int | None = None
    anon_huge_pages_kb: int | None = None
    shmem_pmd_mapped_kb: int | None = None
    file_pmd_mapped_kb: int | None = None
    shared_hugetlb_kb: int | None = None
    private_hugetlb_kb: int | None = None
    swap_kb: int | None = None
    swap_pss_kb: int | None = None
    locked_kb: int | None = None
    fields: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def uss_kb(self) -> int | None:
        """Unique set size: memory freed if the process exited (Private_Clean + Private_Dirty)."""
        if self.private_clean_kb is None or self.private_dirty_kb is None:
            return None
        return self.private_clean_kb + self.private_dirty_kb


@dataclass(frozen=True)
class Region:
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    pathname: str  # '[heap]', '[stack]', '' for anonymous memory
    size_kb: int | None = None
    rss_kb: int | None = None
    pss_kb: int | None = None
    private_dirty_kb: int | None = None
    anonymous_kb: int | None = None
    swap_kb: int | None = None
    locked_kb: int | None = None
    fields: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    vm_flags: tuple[str, ...] | None = None  # None: kernel older than 3.8

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.pathname, self.perms, self.start)


@dataclass(frozen=True)
class Smaps:
    regions: tuple[Region, ...]

    def by_start(self) -> dict[int, Region]:
        return {r.start: r for r in self.regions}

    def total(self, name: str) -> int | None:
        """Sum of one field (as named in the file: 'Rss', 'Pss', ...) over all regions."""
        vals = [r.fields[name] for r in self.regions if name in r.fields]
        return sum(vals) if vals else None


def match(a: Smaps, b: Smaps) -> list[tuple[Region | None, Region | None]]:
    """Pair the regions of two snapshots of one process by start address (see module doc).
    Regions only in `a` come as (region, None), new ones in `b` as (None, region)."""
    bb = b.by_start()
    out: list[tuple[Region | None, Region | None]] = []
    for r in a.regions:
        out.append((r, bb.pop(r.start, None)))
    out.extend((None, r) for r in bb.values())
    return out


def _kv(line: str, path: str, lineno: int, known) -> tuple[str, int] | None:
    """'Name:   N kB' -> (name, N). None for an unknown line that is not a number."""
    name, _, rest = line.partition(":")
    toks = rest.split()
    if len(toks) in (1, 2) and toks[0].isascii() and toks[0].isdigit() \
            and (len(toks) == 1 or toks[1] == "kB"):
        return name, to_int(toks[0], path, lineno, line)  # %8lu: over 64 bits is an error
    if name in known:
        raise ParseError(path, lineno, line, "expected 'Name: N kB'")
    return None


def _is_header(line: str) -> bool:
    head = line.partition(" ")[0]
    return "-" in head and ":" not in head


def parse_rollup(text: str, path: str = ROLLUP_PATH) -> SmapsRollup:
    require_complete(text, path)
    fields: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip() or _is_header(line):
            continue
        if ":" not in line:
            raise ParseError(path, lineno, line, "expected 'Name: N kB'")
        kv = _kv(line, path, lineno, _ROLLUP)
        if kv:
            fields[kv[0]] = kv[1]
    if "Rss" not in fields:
        raise ParseError(path, None, None, "no Rss line (empty or truncated file)")
    return SmapsRollup(**{attr: fields[k] for k, attr in _ROLLUP.items() if k in fields}, fields=fields)


def parse(text: str, path: str = PATH) -> Smaps:
    regions: list[Region] = []
    head = None
    fields: dict[str, int] = {}
    flags = None
    require_complete(text, path)

    def close():
        if head is not None:
            typed = {attr: fields[k] for k, attr in _REGION.items() if k in fields}
            regions.append(Region(head.start, head.end, head.perms, head.offset, head.dev, head.inode,
                                  head.pathname, **typed, fields=fields, vm_flags=flags))

    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if line.startswith("VmFlags:"):
            flags = tuple(line[8:].split())
            continue
        if _is_header(line):
            close()
            head, fields, flags = parse_header(line, path, lineno), {}, None
            continue
        if ":" not in line:
            raise ParseError(path, lineno, line, "expected 'Name: N kB' or a region header")
        if head is None:
            raise ParseError(path, lineno, line, "field before the first region header")
        kv = _kv(line, path, lineno, _ROLLUP)
        if kv:
            fields[kv[0]] = kv[1]
    close()
    return Smaps(tuple(regions))


try:
    from ... import _smapsparse  # the optional C parser (setup.py); absent: parse() only
    SMAPSPARSE_ERROR = ""
except ImportError as _exc:
    _smapsparse = None
    SMAPSPARSE_ERROR = f"ksight._smapsparse not importable: {_exc}"

_C_SPEC: tuple | None = None


def parse_fast(data: bytes, path: str = PATH) -> Smaps:
    """parse() of the raw bytes, giving the same Smaps. smaps of 5,000 mappings is ~125,000
    lines (~4 MB), ~0.15 s for parse(); the C parser (ksight._smapsparse, when built) reads the
    plain form the kernel prints in a few ms and hands anything else (non-ASCII, a line it does
    not know, a cut file, a number past 64 bits) back to parse(), which is the reference and
    raises the ParseError (tests/sources/test_smaps_c.py compares both on corpora and live)."""
    global _C_SPEC
    if _smapsparse is not None:
        if _C_SPEC is None:
            _C_SPEC = (Region, Smaps, tuple(_REGION.items()))
        got = _smapsparse.parse(data, *_C_SPEC)
        if got is not None:
            return got
    return parse(data.decode("utf-8", "replace"), path)


def rollup_from_smaps(s: Smaps) -> SmapsRollup:
    """The totals smaps_rollup would give, summed from smaps (for kernels before 4.14)."""
    sums: dict[str, int] = {}
    for r in s.regions:
        for k, v in r.fields.items():
            sums[k] = sums.get(k, 0) + v
    sums.pop("KernelPageSize", None)
    sums.pop("MMUPageSize", None)
    return SmapsRollup(**{attr: sums[k] for k, attr in _ROLLUP.items() if k in sums}, fields=sums)


def read(root: Root, pid: int) -> Smaps:
    p = path(pid)
    return parse(root.read_text(p), p)


def read_rollup(root: Root, pid: int) -> SmapsRollup:
    p = rollup_path(pid)
    return parse_rollup(root.read_text(p), p)


# ---- the light reading: region headers, Rss and Anonymous only -------------------------------

try:
    from ... import _smapslight  # the optional C reader (setup.py); absent: parse() projected
    SMAPSLIGHT_ERROR = ""
except ImportError as _exc:
    _smapslight = None
    SMAPSLIGHT_ERROR = f"ksight._smapslight not importable: {_exc}"

LightRegion = tuple  # (start, end, perms, inode, pathname, rss_kb | None, anonymous_kb | None)


def light(s: Smaps) -> list[LightRegion]:
    """The light tuples of a parsed smaps: what parse_light gives for the same text."""
    return [(r.start, r.end, r.perms, r.inode, r.pathname, r.fields.get("Rss"),
             r.fields.get("Anonymous")) for r in s.regions]


def parse_light(data: bytes, path: str = PATH) -> list[LightRegion]:
    """Per region (start, end, perms, inode, pathname, Rss kB, Anonymous kB): all that the memory
    growth rules and `ksight leak` need (sources/process_maps.py), without building a Region and
    its `fields` per mapping. The C reader (ksight._smapslight) reads the plain form the kernel
    prints; anything else goes through parse(), the reference, which gives the same tuples or
    raises the ParseError (tests/sources/test_smaps_light.py compares both)."""
    if _smapslight is not None:
        got = _smapslight.parse(data)
        if got is not None:
            return got
    return light(parse(data.decode("utf-8", "replace"), path))
