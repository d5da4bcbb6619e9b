"""/proc/buddyinfo: free blocks per order for each zone ("Node 0, zone Normal 4381 1093 ...").

free_blocks[k] is the number of free blocks of 2**k pages; the number of orders is
MAX_ORDER (11 on x86 for most kernels, more on some arm64/ppc64 configurations).
"""

from __future__ import annotations

import re
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/buddyinfo"

_LINE = re.compile(r"^Node\s+([0-9]+),\s*zone\s+(\S+)\s*(.*)$")


@dataclass(frozen=True)
class BuddyZone:
    node: int
    zone: str
    free_blocks: tuple[int, ...]  # index = order

    @property
    def free_pages(self) -> int:
        return sum(n << order for order, n in enumerate(self.free_blocks))


@dataclass(frozen=True)
class Buddyinfo:
    zones: tuple[BuddyZone, ...]

    def zone(self, node: int, name: str) -> BuddyZone | None:
        for z in self.zones:
            if z.node == node and z.zone == name:
                return z
        return None


def parse(text: str, path: str = PATH) -> Buddyinfo:
    require_complete(text, path)
    zones = []
    for lineno, line in numbered_lines(text):
        m = _LINE.match(line.strip())
        if not m:
            raise ParseError(path, lineno, line, "expected 'Node N, zone NAME counts...'")
        toks = m.group(3).split()
        if not toks:
            raise ParseError(path, lineno, line, "no free-block counts")
        blocks = tuple(to_int(t, path, lineno, line) for t in toks)
        if zones and len(blocks) != len(zones[0].free_blocks):
            # the kernel prints MAX_ORDER columns for every zone: a short row was cut off
            raise ParseError(path, lineno, line, f"expected {len(zones[0].free_blocks)} orders, "
                             f"got {len(blocks)} (truncated?)")
        zones.append(BuddyZone(to_int(m.group(1), path, lineno, line), m.group(2), blocks))
    if not zones:
        raise ParseError(path, None, None, "empty file")
    return Buddyinfo(tuple(zones))


def read(root: Root) -> Buddyinfo:
    return parse(root.read_text(PATH))
