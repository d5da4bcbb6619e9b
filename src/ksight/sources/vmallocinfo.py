"""/proc/vmallocinfo: every vmalloc-space area, aggregated by the caller that allocated it.

Each line (mm/vmalloc.c, s_show) is
    0xSTART-0xEND SIZE [caller+0xoff/0xlen [module]] [pages=N] [phys=0x..] [flags...] [N0=n ...]
The flags are ioremap, sparse, vmalloc, vmap, user, dma-coherent, vpages. Areas without a
struct vm_struct print "vm_map_ram" (vm_map_ram()) or "unpurged vm_area" (freed, waiting for the
lazy purge) instead of a caller; they are grouped under "(vm_map_ram)" and "(unpurged)".
An area with a vm_struct but no caller groups under "(unknown)".

The file is root-only (0400). Addresses are hashed or zeroed by %pK for readers without
CAP_SYSLOG; we never use them. SIZE includes the guard page on kernels that add one.
"""

from __future__ import annotations

import re
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import U64_MAX, require_complete, to_int

PATH = "proc/vmallocinfo"

FLAGS = ("ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages")
UNPURGED = "(unpurged)"
VM_MAP_RAM = "(vm_map_ram)"
UNKNOWN = "(unknown)"

_RANGE = re.compile(r"^0x[0-9a-fA-F]+-0x[0-9a-fA-F]+$")
_NODE = re.compile(r"^N[0-9]+=[0-9]+$")
_SYM_OFF = re.compile(r"\+0x[0-9a-fA-F]+(/0x[0-9a-fA-F]+)?$")


@dataclass(frozen=True)
class VmallocCaller:
    caller: str  # function name ('alloc_large_system_hash'), or one of the (..) group names
    count: int = 0
    bytes: int = 0
    pages: int = 0  # sum of pages=N (pages actually backing the areas); 0 when none printed
    kinds: tuple[str, ...] = ()  # flags seen, sorted (vmalloc, ioremap, vmap, user, vpages, ...)
    module: str | None = None  # '[xfs]' suffix of the symbol, without brackets


@dataclass(frozen=True)
class Vmallocinfo:
    by_caller: dict[str, VmallocCaller] = field(default_factory=dict)
    total_bytes: int = 0  # sum of every area's size, unpurged ones included
    areas: int = 0
    vmalloc_pages: int = 0  # sum of pages=N over all areas (what meminfo's VmallocUsed counts on 5.x+)
    unpurged_bytes: int = 0

    def top(self, n: int = 10) -> list[VmallocCaller]:
        return sorted(self.by_caller.values(), key=lambda c: c.bytes, reverse=True)[:n]


def caller_name(sym: str) -> str:
    """'alloc_large_system_hash+0x1f0/0x2c0' -> 'alloc_large_system_hash'."""
    if "+0x" not in sym:
        return sym  # nothing for _SYM_OFF to remove (skips the regex on the hot path)
    return _SYM_OFF.sub("", sym)


# What every line looks like (mm/vmalloc.c s_show): range, size, then the rest (caller, pages=,
# phys=, flags, N0=...) after one space; '\n' is the only line break. Checked over the whole text
# in one match, so the per-line work below is a split and a dict lookup.
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits on
_STANDARD = re.compile(r"(?:0x[0-9a-fA-F]+-0x[0-9a-fA-F]+ +[0-9]{1,20}(?: [^" + _BREAKS + r"]*)?\n)+")
_new = object.__new__

try:
    from .._procscan import vmalloc_tails as _c_tails  # the optional C extension (setup.py)
except ImportError:  # not built: the Python fast path below does the same work
    _c_tails = None


class _Slow(Exception):
    """The fast path met something only the reference path handles (it gives the error)."""


def parse(text: str, path: str = PATH) -> Vmallocinfo:
    """Aggregate the areas by caller.

    Fast path: when the whole text has the standard line shape, lines are grouped by everything
    after the size (most repeat: 'unpurged vm_area' is often 3/4 of the file) and each distinct
    tail is read once. The grouping is done in C (ksight._procscan.vmalloc_tails) when the
    extension is built and the text is plain ASCII with plain numbers, else in Python.
    Anything else goes line by line (_parse_lines), which raises the errors. All give identical
    results (tests/sources/test_fast_paths.py and test_c_parsers.py check them against each other).
    """
    if _c_tails is not None:
        groups = _c_tails(text)
        if groups is not None:
            try:
                return _aggregate(groups)
            except _Slow:
                return _parse_lines(text, path)  # a bad pages=
    return _parse_py(text, path)


def _parse_py(text: str, path: str = PATH) -> Vmallocinfo:
    """The Python fast path (what the C grouping does), falling back to _parse_lines."""
    if not _STANDARD.fullmatch(text):
        return _parse_lines(text, path)
    tails: dict[str, list[str]] = {}
    get = tails.get
    try:
        for line in text.splitlines():
            _rng, size, tail = line.split(None, 2)
            sizes = get(tail)
            if sizes is None:
                tails[tail] = [size]
            else:
                sizes.append(size)
        groups = {}
        for t, s in tails.items():
            ns = list(map(int, s))
            if max(ns) > U64_MAX:  # 20 digits above 2^64-1: the reference names it
                raise _Slow
            groups[t] = (len(ns), sum(ns))
        return _aggregate(groups)
    except (ValueError, _Slow):
        return _parse_lines(text, path)  # a line with nothing after the size, or a bad pages=


def _aggregate(tails: dict[str, tuple[int, int]]) -> Vmallocinfo:
    """{tail after the size: (areas, their total size)} -> the result."""
    acc: dict[str, list] = {}  # caller -> [count, bytes, pages, kinds, module]
    total = areas = pages_total = unpurged = 0
    for tail, (n, nbytes) in tails.items():
        toks = tail.split()
        caller, module, kind0, i = UNKNOWN, None, None, 0
        t0 = toks[0] if toks else None
        if t0 == "unpurged" and len(toks) > 1 and toks[1] == "vm_area":
            caller, i = UNPURGED, 2
            unpurged += nbytes
        elif t0 == "vm_map_ram":
            caller, i, kind0 = VM_MAP_RAM, 1, "vm_map_ram"
        elif t0 is not None and not (t0 in FLAGS or "=" in t0):
            caller, i = caller_name(t0), 1
            if len(toks) > 1 and toks[1].startswith("[") and toks[1].endswith("]"):
                module, i = toks[1][1:-1], 2
        a = acc.get(caller)
        if a is None:
            a = acc[caller] = [0, 0, 0, set(), module]
        kinds = a[3]
        if kind0 is not None:
            kinds.add(kind0)
        pages = 0
        for tok in toks[i:]:
            if tok.startswith("pages="):
                p = tok[6:]
                if not (p.isascii() and p.isdigit() and len(p) < 20):
                    raise _Slow  # the reference names it
                pages = int(p)
            elif tok in FLAGS:
                kinds.add(tok)
        a[0] += n
        a[1] += nbytes
        a[2] += pages * n
        total += nbytes
        areas += n
        pages_total += pages * n
    by_caller = {}
    for k, v in acc.items():
        c = _new(VmallocCaller)  # frozen dataclass without its per-field object.__setattr__
        c.__dict__.update(caller=k, count=v[0], bytes=v[1], pages=v[2],
                          kinds=tuple(sorted(v[3])), module=v[4])
        by_caller[k] = c
    return Vmallocinfo(by_caller=by_caller, total_bytes=total, areas=areas,
                       vmalloc_pages=pages_total, unpurged_bytes=unpurged)


def _parse_lines(text: str, path: str = PATH) -> Vmallocinfo:
    """The line-by-line reference: any shape split() can read, and the ParseErrors."""
    require_complete(text, path)
    # Hot loop (1,000+ lines on a small machine): per-caller accumulators are lists
    # [count, bytes, pages, kinds, module], created only for a new caller.
    acc: dict[str, list] = {}
    total = areas = pages_total = unpurged = 0
    range_match = _RANGE.match
    names: dict[str, str] = {}  # symbol+0xoff/0xlen -> caller (the same few repeat a lot)
    for lineno, line in enumerate(text.splitlines(), 1):
        toks = line.split()
        if not toks:
            continue  # blank line
        if len(toks) < 2 or not range_match(toks[0]):
            raise ParseError(path, lineno, line, "expected '0xSTART-0xEND SIZE ...'")
        size = to_int(toks[1], path, lineno, line)
        caller = UNKNOWN
        module = None
        kind0 = None  # the flag implied by the caller field (vm_map_ram)
        pages = 0
        i = 2
        t2 = toks[2] if len(toks) > 2 else None
        if t2 == "unpurged" and len(toks) > 3 and toks[3] == "vm_area":
            caller, i = UNPURGED, 4
            unpurged += size
        elif t2 == "vm_map_ram":
            caller, i = VM_MAP_RAM, 3
            kind0 = "vm_map_ram"
        elif t2 is not None and not (t2 in FLAGS or "=" in t2):
            caller = names.get(t2)
            if caller is None:
                caller = names[t2] = caller_name(t2)
            i = 3
            if len(toks) > 3 and toks[3].startswith("[") and toks[3].endswith("]"):
                module, i = toks[3][1:-1], 4
        a = acc.get(caller)
        if a is None:
            a = acc[caller] = [0, 0, 0, set(), module]
        kinds = a[3]
        if kind0 is not None:
            kinds.add(kind0)
        for tok in toks[i:]:
            if tok.startswith("pages="):
                pages = to_int(tok[6:], path, lineno, line)
            elif tok in FLAGS:
                kinds.add(tok)
            # phys=, N0=, and flags of future kernels are skipped on purpose
        a[0] += 1
        a[1] += size
        a[2] += pages
        total += size
        areas += 1
        pages_total += pages
    if areas == 0:
        raise ParseError(path, None, None, "empty file (a running kernel always has vmalloc areas)")
    by_caller = {k: VmallocCaller(caller=k, count=v[0], bytes=v[1], pages=v[2],
                                  kinds=tuple(sorted(v[3])), module=v[4])
                 for k, v in acc.items()}
    return Vmallocinfo(by_caller=by_caller, total_bytes=total, areas=areas,
                       vmalloc_pages=pages_total, unpurged_bytes=unpurged)


def read(root: Root) -> Vmallocinfo:
    return parse(root.read_text(PATH))
