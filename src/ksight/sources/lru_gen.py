"""/sys/kernel/mm/lru_gen/enabled: whether the multi-generational LRU (MGLRU, 6.1+) reclaims.

The file exists on kernels built with CONFIG_LRU_GEN (6.1 and later) and holds a hex mask
(Documentation/admin-guide/mm/multigen_lru.rst): 0x0001 the main switch, 0x0002 clearing the
accessed bit in leaf page tables, 0x0004 in non-leaf ones; "0x0000" means the classic
active/inactive LRU reclaims. Writing "y"/"n" sets every bit, so a reader sees only the mask.

Why ksight reads it: with MGLRU on, vmstat pgscan_* counts only the folios scan_folios()
isolated (mm/vmscan.c: count_vm_events(PGSCAN_KSWAPD + reclaimer_offset(), isolated)); folios it
sorts to a younger generation without isolating are not counted, so pgsteal/pgscan (%vmeff)
stays near 100 % however hard reclaim works. A missing file is Unavailable with that reason:
the kernel has no MGLRU, which a rule may read as "classic LRU".
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root
from ._text import require_complete

PATH = "sys/kernel/mm/lru_gen/enabled"
ABSENT_REASON = ("no /sys/kernel/mm/lru_gen/enabled: kernel without CONFIG_LRU_GEN (before 6.1, "
                 "or not built in): reclaim uses the classic active/inactive LRU")


@dataclass(frozen=True)
class LruGen:
    enabled_mask: int  # the hex mask the kernel printed; 0: MGLRU off

    @property
    def on(self) -> bool:
        """The main switch (bit 0x0001): MGLRU reclaims."""
        return bool(self.enabled_mask & 0x1)


def parse(text: str, path: str = PATH) -> LruGen:
    require_complete(text, path)
    line = text.strip()
    tok = line.split()[0] if line else ""
    if not tok.lower().startswith("0x") or len(tok) > 18:
        raise ParseError(path, 1, line, "expected a hex mask such as 0x0007")
    try:
        v = int(tok[2:], 16)
    except ValueError:
        raise ParseError(path, 1, line, "expected a hex mask such as 0x0007") from None
    return LruGen(v)


def read(root: Root) -> LruGen:
    if not root.exists(PATH):
        raise Unavailable(PATH, ABSENT_REASON)
    return parse(root.read_text(PATH))
