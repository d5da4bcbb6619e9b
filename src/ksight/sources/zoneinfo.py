"""/proc/zoneinfo: per-zone free pages, watermarks and page counters (all in pages).

Layouts differ across kernels, and the parser follows the structure, not a fixed line list:

    Node 0, zone   Normal              <- starts a zone
      per-node stats                   <- 4.8+: the node's counters (printed once per node,
          nr_inactive_anon 95612          under its first zone); they go to node_counters
      pages free     2949              <- the zone's own block
            boost    0                 <- 5.0+
            min      8
            low      11
            high     14
            promo    14                <- 6.x (memory tiering)
            scanned  0                 <- up to 4.7 ("node_scanned" in 4.8-4.12);
                                                  2.6.18-ish kernels print "0 (a: 0 i: 0)"
            spanned  4095
            present  3997
            managed  3973              <- 3.8+
            cma      0                 <- 6.x
            protection: (0, 2039, 31932)
          nr_free_pages 2949           <- zone counters (before 4.8 every counter is here)
      pagesets                         <- per-CPU lists: skipped
        cpu: 0
                  count: 0
      vm stats threshold: 8
      node_unreclaimable:  0           <- "key: value" zone attributes (all_unreclaimable,
      start_pfn:           1              prev_priority, inactive_ratio on old kernels)

Empty zones on new kernels stop after the protection line. Watermarks are None when the
kernel did not print them (no 'managed' before 3.8, no 'boost' before 5.0).
"""

from __future__ import annotations

import re
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import require_complete, to_int

PATH = "proc/zoneinfo"

_HEADER = re.compile(r"^Node\s+([0-9]+),\s*zone\s+(\S+)\s*$")
# "pages free" block keys -> Zone attribute
_WATERMARKS = {
    "min": "min_pages", "low": "low_pages", "high": "high_pages", "boost": "boost_pages",
    "promo": "promo_pages", "scanned": "scanned_pages", "spanned": "spanned_pages",
    # 4.8-4.12 print the node's pages-scanned count in every zone block as "node_scanned"
    "node_scanned": "scanned_pages",
    "present": "present_pages", "managed": "managed_pages", "cma": "cma_pages",
}


@dataclass(frozen=True)
class Zone:
    node: int
    name: str
    free_pages: int | None = None
    min_pages: int | None = None
    low_pages: int | None = None
    high_pages: int | None = None
    boost_pages: int | None = None
    spanned_pages: int | None = None
    present_pages: int | None = None
    managed_pages: int | None = None
    protection: tuple[int, ...] | None = None  # lowmem_reserve[] in pages, one per zone index
    counters: dict[str, int] = field(default_factory=dict)  # nr_free_pages, numa_hit, ...
    promo_pages: int | None = None  # 6.x memory tiering watermark
    scanned_pages: int | None = None  # up to 4.7
    cma_pages: int | None = None
    # "key: value" zone attributes: start_pfn, node_unreclaimable, all_unreclaimable, ...
    attrs: dict[str, int] = field(default_factory=dict)

    @property
    def start_pfn(self) -> int | None:
        return self.attrs.get("start_pfn")


@dataclass(frozen=True)
class Zoneinfo:
    zones: tuple[Zone, ...]
    node_counters: dict[int, dict[str, int]] = field(default_factory=dict)

    def zone(self, node: int, name: str) -> Zone | None:
        for z in self.zones:
            if z.node == node and z.name == name:
                return z
        return None

    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted({z.node for z in self.zones}))


def _protection(rest: str, path: str, lineno: int, line: str) -> tuple[int, ...]:
    s = rest.strip()
    if not (s.startswith("(") and s.endswith(")")):
        raise ParseError(path, lineno, line, "expected 'protection: (n, n, ...)'")
    inner = s[1:-1].strip()
    if not inner:
        return ()
    # lowmem_reserve[] is long, printed ", %ld"
    return tuple(to_int(t.strip(), path, lineno, line, signed=True) for t in inner.split(","))


def parse(text: str, path: str = PATH) -> Zoneinfo:
    zones: list[Zone] = []
    node_counters: dict[int, dict[str, int]] = {}
    cur: dict | None = None  # keyword arguments of the zone being read
    # where "name value" lines go: "node" (per-node stats), "zone", or "pagesets" (skipped)
    section = "zone"
    require_complete(text, path)

    def finish() -> None:
        if cur is not None:
            zones.append(Zone(**cur))

    for lineno, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped[0] == "N" and stripped.startswith("Node"):  # cheap test before the regex
            m = _HEADER.match(stripped)
            if not m:
                raise ParseError(path, lineno, line, "expected 'Node N, zone NAME'")
            finish()
            cur = {"node": to_int(m.group(1), path, lineno, line), "name": m.group(2), "counters": {}, "attrs": {}}
            section = "zone"
            continue
        if cur is None:
            raise ParseError(path, lineno, line, "line before the first 'Node N, zone' header")

        if section == "pagesets":
            # per-CPU pageset lines are indented 4+; "vm stats threshold" sits at 2 and belongs
            # to them too. Any other 2-space line ends the pagesets block.
            if line.startswith("    ") or stripped.startswith("vm stats threshold"):
                continue
            section = "zone"

        if stripped == "per-node stats":
            section = "node"
            node_counters.setdefault(cur["node"], {})
            continue
        if stripped == "pagesets":
            section = "pagesets"
            continue
        if stripped.startswith("protection:"):
            cur["protection"] = _protection(stripped.partition(":")[2], path, lineno, line)
            continue
        toks = stripped.split()
        if toks[:2] == ["pages", "free"]:
            if len(toks) != 3:
                raise ParseError(path, lineno, line, "expected 'pages free N'")
            cur["free_pages"] = to_int(toks[2], path, lineno, line)
            section = "zone"
            continue
        if ":" in toks[0]:
            # "start_pfn: 1", "node_unreclaimable: 0", "vm stats threshold: 8" (outside
            # pagesets on some kernels), or shapes we do not know: keep ints, skip the rest.
            key, _, val = stripped.partition(":")
            vtoks = val.split()
            # printed %u/%lu, or %i (prev_priority on old kernels): signed
            if len(vtoks) == 1 and vtoks[0].lstrip("-").isdigit():
                cur["attrs"][key.strip()] = to_int(vtoks[0], path, lineno, line, signed=True)
            continue
        name = toks[0]
        if len(toks) == 1 and name.isascii() and name.isdigit():
            # A value without a name: some 4.x kernels had a node_stat name table one entry
            # short of the counters, so zoneinfo printed "%-12s %lu" with an empty name.
            continue
        if len(toks) == 2:
            value = to_int(toks[1], path, lineno, line)
        elif name == "scanned" and len(toks) > 2 and toks[2].startswith("("):
            value = to_int(toks[1], path, lineno, line)  # 2.6.x: "scanned 0 (a: 0 i: 0)"
        else:
            raise ParseError(path, lineno, line, "expected 'name value'")
        if section == "node":
            node_counters[cur["node"]][name] = value
        elif name in _WATERMARKS:
            cur[_WATERMARKS[name]] = value
        else:
            cur["counters"][name] = value
    finish()
    if not zones:
        raise ParseError(path, None, None, "no 'Node N, zone NAME' section (empty file?)")
    return Zoneinfo(tuple(zones), node_counters)


def read(root: Root) -> Zoneinfo:
    return parse(root.read_text(PATH))
