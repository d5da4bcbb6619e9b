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
from dataclasses import dataclass, field

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, to_int

PATH = "proc/vmallocinfo"

FLAGS = ("ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages")
UNPURGED = "(unpurged)"
VM_MAP_RAM = "(vm_map_ram)"
UNKNOWN = "(unknown)"

_RANGE = re.compile(r"^0x[0-9a-fA-F]+-0x[0-9a-fA-F]+$")
_NODE = re.compile(r"^N\d+=\d+$")
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
    return _SYM_OFF.sub("", sym)


def parse(text: str, path: str = PATH) -> Vmallocinfo:
    acc: dict[str, dict] = {}
    total = areas = pages_total = unpurged = 0
    for lineno, line in numbered_lines(text):
        toks = line.split()
        if len(toks) < 2 or not _RANGE.match(toks[0]):
            raise ParseError(path, lineno, line, "expected '0xSTART-0xEND SIZE ...'")
        size = to_int(toks[1], path, lineno, line)
        rest = toks[2:]
        caller = UNKNOWN
        module = None
        kinds: set[str] = set()
        pages = 0
        i = 0
        if rest[:2] == ["unpurged", "vm_area"]:
            caller, i = UNPURGED, 2
            unpurged += size
        elif rest[:1] == ["vm_map_ram"]:
            caller, i = VM_MAP_RAM, 1
            kinds.add("vm_map_ram")
        elif rest and not (rest[0] in FLAGS or "=" in rest[0]):
            caller, i = caller_name(rest[0]), 1
            if len(rest) > 1 and rest[1].startswith("[") and rest[1].endswith("]"):
                module, i = rest[1][1:-1], 2
        for tok in rest[i:]:
            if tok.startswith("pages="):
                pages = to_int(tok[6:], path, lineno, line)
            elif tok in FLAGS:
                kinds.add(tok)
            # phys=, N0=, and flags of future kernels are skipped on purpose
        a = acc.setdefault(caller, {"count": 0, "bytes": 0, "pages": 0, "kinds": set(), "module": module})
        a["count"] += 1
        a["bytes"] += size
        a["pages"] += pages
        a["kinds"] |= kinds
        total += size
        areas += 1
        pages_total += pages
    if areas == 0:
        raise ParseError(path, None, None, "empty file (a running kernel always has vmalloc areas)")
    by_caller = {k: VmallocCaller(caller=k, count=v["count"], bytes=v["bytes"], pages=v["pages"],
                                  kinds=tuple(sorted(v["kinds"])), module=v["module"])
                 for k, v in acc.items()}
    return Vmallocinfo(by_caller=by_caller, total_bytes=total, areas=areas,
                       vmalloc_pages=pages_total, unpurged_bytes=unpurged)


def read(root: Root) -> Vmallocinfo:
    return parse(root.read_text(PATH))
