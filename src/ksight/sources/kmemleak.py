"""debugfs kmemleak (/sys/kernel/debug/kmemleak): kernel objects no pointer refers to.

Reading the file prints what the last scan found (mm/kmemleak.c, kmemleak_seq_show -> print_unreferenced):

    unreferenced object 0xffff888003e0c000 (size 1024):
      comm "modprobe", pid 321, jiffies 4294892352
      hex dump (first 32 bytes):
        ...
      backtrace (crc 5bd7e6b3):
        [<ffffffff81234567>] __kmalloc+0x1b4/0x2c0
        [<ffffffffc0123456>] my_driver_probe+0x56/0x120 [my_driver]

Reading does not scan: the kernel scans every 10 minutes (kmemleak thread) or on
`echo scan > /sys/kernel/debug/kmemleak`. kmemleak must be built in (CONFIG_DEBUG_KMEMLEAK) and
not disabled at boot (kmemleak=off); it tracks every slab and vmalloc allocation, which costs
memory and CPU on every allocation: a test-machine tool. Not read unless named (default=False).
"""

from __future__ import annotations

import re
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import to_int

PATH = "sys/kernel/debug/kmemleak"
_HEAD = re.compile(r"^unreferenced object 0x[0-9a-fA-F]+ \(size (\d+)\):")
_COMM = re.compile(r'^\s+comm "(.*)", pid (\d+)')
_FRAME = re.compile(r"^\s+\[<[0-9a-fA-F]+>\] (\S+)(?: \[(\S+)\])?")
# allocator entry points: the first frame *after* these is the caller to blame
_ALLOC = re.compile(r"^(kmemleak_|__?kmalloc|kmalloc|kmem_cache_alloc|__?vmalloc|vmalloc|"
                    r"kzalloc|kvmalloc|__alloc|alloc_pages|slab_post_alloc|__kmem_cache|"
                    r"krealloc|kmemdup|kstrdup|pcpu_alloc|__do_kmalloc|slab_alloc|"
                    r"__kvmalloc|kmalloc_trace)")


@dataclass(frozen=True)
class LeakGroup:
    caller: str  # first frame outside the allocator ("my_driver_probe [my_driver]")
    objects: int
    bytes: int
    comm: str | None  # of the first object


@dataclass(frozen=True)
class Kmemleak:
    objects: int
    bytes: int
    groups: tuple[LeakGroup, ...] = ()  # largest first


def _caller(frames: list[tuple[str, str | None]]) -> str:
    for sym, mod in frames:
        if not _ALLOC.match(sym):
            return sym.split("+")[0] + (f" [{mod}]" if mod else "")
    return frames[0][0].split("+")[0] if frames else "(no backtrace)"


def parse(text: str, path: str = PATH) -> Kmemleak:
    objs: list[tuple[int, str | None, list]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEAD.match(line)
        if m:
            objs.append((to_int(m.group(1), path, lineno, line), None, []))
            continue
        if line.startswith("unreferenced"):
            raise ParseError(path, lineno, line, "expected 'unreferenced object 0x... (size N):'")
        if not objs:
            continue
        c = _COMM.match(line)
        if c:
            objs[-1] = (objs[-1][0], c.group(1), objs[-1][2])
            continue
        f = _FRAME.match(line)
        if f:
            objs[-1][2].append((f.group(1), f.group(2)))
    acc: dict[str, list] = {}
    for size, comm, frames in objs:
        k = _caller(frames)
        a = acc.setdefault(k, [0, 0, comm])
        a[0] += 1
        a[1] += size
    groups = sorted((LeakGroup(k, v[0], v[1], v[2]) for k, v in acc.items()),
                    key=lambda g: (-g.bytes, g.caller))
    return Kmemleak(len(objs), sum(o[0] for o in objs), tuple(groups))


def read(root: Root) -> Kmemleak:
    return parse(root.read_text(PATH))
