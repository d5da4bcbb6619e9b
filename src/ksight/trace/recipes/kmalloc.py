"""kmalloc: kernel memory allocated in the window and not freed by its end, by call site."""

from __future__ import annotations

import bisect
from collections import Counter
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...errors import Unavailable
from ...fs import Root
from .base import Recipe, RecipeResult

KALLSYMS = "proc/kallsyms"


@dataclass(frozen=True)
class CallSite:
    call_site: str                # symbol+offset (kallsyms), else the address
    addr: str
    outstanding_bytes: int
    outstanding: int              # objects not freed
    allocs: int                   # all allocations from this site in the window


@dataclass(frozen=True, kw_only=True)
class KmallocResult(RecipeResult):
    call_sites: tuple[CallSite, ...]
    outstanding_bytes: int
    allocs: int
    frees_matched: int


class Kallsyms:
    """Text symbols of /proc/kallsyms, for naming call sites (addresses are 0 without root)."""

    def __init__(self, addrs: list[int], names: list[str]):
        self.addrs, self.names = addrs, names

    @classmethod
    def parse(cls, text: str) -> "Kallsyms":
        pairs = []
        for line in text.splitlines():
            t = line.split()
            if len(t) >= 3 and t[1] in "tTwW":
                try:
                    a = int(t[0], 16)
                except ValueError:
                    continue  # not an address: skipped on purpose
                if a:
                    pairs.append((a, t[2]))
        pairs.sort()
        return cls([a for a, _ in pairs], [n for _, n in pairs])

    @classmethod
    def read(cls, root: Root) -> "Kallsyms":
        try:
            return cls.parse(root.read_text(KALLSYMS))
        except Unavailable:
            return cls([], [])

    def name(self, addr: int) -> str:
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0 or not self.addrs:
            return hex(addr)
        return f"{self.names[i]}+{addr - self.addrs[i]:#x}"


class Kmalloc(Recipe):
    name = "kmalloc"
    question = "kernel allocations not freed (kmalloc minus kfree, by call site)"
    events = ("kmem:kmalloc", "kmem:kfree")
    buffer_kb = 8192
    overhead = ("HIGH: kmalloc/kfree fire hundreds of thousands of times per second on a busy "
                "machine; expect several % of CPU and lost events under load. Keep it short.")
    MAX_LIVE = 2_000_000
    Result = KmallocResult

    def __init__(self, root, **opts):
        super().__init__(root, **opts)
        self.live: dict[int, tuple[int, int]] = {}
        self.allocs: Counter = Counter()
        self.frees = 0
        self.dropped = 0

    def on_event(self, e):
        f = e.fields
        if e.name == "kmem:kmalloc":
            if len(self.live) < self.MAX_LIVE:
                self.live[f["ptr"]] = (f["call_site"], f["bytes_alloc"])
            else:
                self.dropped += 1
            self.allocs[f["call_site"]] += 1
        else:
            if self.live.pop(f["ptr"], None) is not None:
                self.frees += 1

    def body(self):
        out_b: Counter = Counter()
        out_n: Counter = Counter()
        for site, size in self.live.values():
            out_b[site] += size
            out_n[site] += 1
        syms = Kallsyms.read(self.root)
        sites = tuple(CallSite(syms.name(s), hex(s), b, out_n[s], self.allocs[s])
                      for s, b in out_b.most_common(30))
        notes = ["outstanding = allocated during the window and not freed by its end "
                 "(short windows overstate long-lived but legitimate objects)"]
        if self.dropped:
            notes.append(f"{self.dropped} allocations not tracked (table full)")
        return {"call_sites": sites, "outstanding_bytes": sum(out_b.values()),
                "allocs": sum(self.allocs.values()), "frees_matched": self.frees, "notes": notes}
