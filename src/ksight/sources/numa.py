"""/sys/devices/system/node/node*/: per-NUMA-node memory (meminfo, numastat), CPUs, distances.

    meminfo   "Node 0 MemTotal:  134182340 kB"   (kB; HugePages_* are page counts)
    numastat  "numa_hit 193460335812"            (page allocation counters)
    cpulist   "0-3,8,10-11"                      (empty for a memory-only node)
    distance  "10 20 20 20"                      (SLIT distance to node 0, 1, ...)

A kernel built without CONFIG_NUMA has no node directory at all: read() raises Unavailable.
A single-node machine with CONFIG_NUMA shows node0 only.
"""

from __future__ import annotations

import re
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root
from ._text import numbered_lines, parse_cpulist, require_complete, space_kv, to_int

BASE = "sys/devices/system/node"
PATH = BASE

_NODE_DIR = re.compile(r"^node([0-9]{1,6})$")
_MEMINFO = re.compile(r"^Node\s+([0-9]+)\s+(\S+):\s*(\S+)(?:\s+(\S+))?\s*$")


@dataclass(frozen=True)
class NumaNode:
    node: int
    meminfo: dict[str, int] = field(default_factory=dict)  # kB, HugePages_* are counts
    numastat: dict[str, int] = field(default_factory=dict)  # numa_hit, numa_miss, ...
    cpus: tuple[int, ...] | None = None
    distance: tuple[int, ...] | None = None  # index = other node's position in node order


@dataclass(frozen=True)
class Numa:
    nodes: dict[int, NumaNode] = field(default_factory=dict)


def parse_meminfo(text: str, path: str, node: int | None = None) -> dict[str, int]:
    """'Node N Name: value [kB]' lines -> {Name: value}. A line for another node is malformed."""
    out: dict[str, int] = {}
    text = text.rstrip("\x00")
    require_complete(text, path)
    for lineno, line in numbered_lines(text):
        m = _MEMINFO.match(line.strip())
        if not m:
            raise ParseError(path, lineno, line, "expected 'Node N Name: value [kB]'")
        if node is not None and to_int(m.group(1), path, lineno, line) != node:
            raise ParseError(path, lineno, line, f"line for node {m.group(1)} in node{node}'s file")
        if m.group(4) not in (None, "kB"):
            raise ParseError(path, lineno, line, "unexpected unit")
        out[m.group(2)] = to_int(m.group(3), path, lineno, line)
    return out


def parse_distance(text: str, path: str = "distance") -> tuple[int, ...]:
    require_complete(text, path)
    line = text.strip()
    return tuple(to_int(t, path, 1, line) for t in line.split())


def _optional(root: Root, path: str) -> str | None:
    try:
        # Some captures (PCP's meminfo-root-004) pad sysfs files with NULs up to the page size;
        # the kernel never writes them.
        return root.read_text(path).rstrip("\x00")
    except Unavailable:
        return None


def read(root: Root) -> Numa:
    try:
        names = root.listdir(BASE)
    except Unavailable as u:
        raise Unavailable(BASE, f"no NUMA node directory (kernel without CONFIG_NUMA?): {u.reason}") from None
    nums = sorted(int(m.group(1)) for n in names if (m := _NODE_DIR.match(n)))
    if not nums:
        raise Unavailable(BASE, "no node* directories (kernel without CONFIG_NUMA?)")
    nodes = {}
    for n in nums:
        d = f"{BASE}/node{n}"
        mem = _optional(root, f"{d}/meminfo")
        stat = _optional(root, f"{d}/numastat")
        cpus = _optional(root, f"{d}/cpulist")
        dist = _optional(root, f"{d}/distance")
        nodes[n] = NumaNode(
            node=n,
            meminfo=parse_meminfo(mem, f"{d}/meminfo", n) if mem is not None else {},
            numastat=space_kv(stat, f"{d}/numastat") if stat is not None else {},
            cpus=parse_cpulist(cpus, f"{d}/cpulist") if cpus is not None else None,
            distance=parse_distance(dist, f"{d}/distance") if dist is not None else None,
        )
    return Numa(nodes)
