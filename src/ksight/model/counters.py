"""Counters by name, checked: what a rule reads, declared once, refused when misspelt.

A rule used to read `ctx.rate("vmstat", "counters.pswpn")`: a typo returned None, which looks
exactly like "absent on this kernel", and the rule silently never fired. Here a counter is an
object made at import time from names the kernel has really printed (model.counter_names); an
unknown name raises UnknownCounter when the rule module is imported, so the test suite fails.

    ALLOCSTALL = vm("allocstall")                      # per zone before 4.8: summed
    REFAULT = vm("workingset_refault_file", "workingset_refault")   # 5.9+, else 3.15-5.8
    CG_REFAULT = cg("workingset_refault_file", "workingset_refault")
    LISTEN_OVERFLOWS = net("TcpExt", "ListenOverflows")

Alternative names are tried in order: the first one the kernel printed wins, so a counter that
was renamed across kernels is one object. `since` says, for "could not look" messages, which
kernels have it.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Any

from . import counter_names
from .vmcounters import ZONE_SUFFIXES, vm_total


class UnknownCounter(ValueError):
    """A rule named a counter the kernel has never printed."""


@dataclass(frozen=True)
class Counter:
    """A cumulative counter of one system source. `read(parsed_source)` -> int | None."""

    source: str  # snapshot source name: "vmstat", "netstat", "snmp"
    names: tuple[str, ...]  # alternatives across kernels, preferred first
    zoned: bool = False  # vmstat: also sum the per-zone variants (<4.8 kernels)
    since: str = ""  # which kernels print it, for the "could not look" reason

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def file(self) -> str:
        return {"vmstat": "/proc/vmstat", "netstat": "/proc/net/netstat",
                "snmp": "/proc/net/snmp"}.get(self.source, self.source)

    def read(self, parsed: Any) -> int | None:
        if parsed is None:
            return None
        if self.source == "vmstat":
            counters = parsed.counters
            for n in self.names:
                v = vm_total(counters, n) if self.zoned else counters.get(n)
                if v is not None:
                    return v
            return None
        for n in self.names:  # snmp / netstat: "Group.Name"
            group, _, field = n.partition(".")
            v = parsed.get(group, field)
            if v is not None:
                return v
        return None

    def absent_reason(self) -> str:
        alts = " or ".join(self.names)
        return f"{self.file} has no {alts}" + (f" ({self.since})" if self.since else "")


@dataclass(frozen=True)
class CgroupCounter:
    """A memory.stat key of a memory cgroup (v1 or v2), with alternatives across kernels."""

    names: tuple[str, ...]
    since: str = ""

    @property
    def name(self) -> str:
        return self.names[0]

    def read(self, group: Any) -> int | None:
        stat = getattr(group, "stat", None)
        if not stat:
            return None
        for n in self.names:
            v = stat.get(n)
            if v is not None:
                return v
        return None


@dataclass(frozen=True)
class CounterSum:
    """The sum of counters of one source (None when none is printed), or, when none of the
    parts is, a fallback counter: pgsteal = pgsteal_kswapd + pgsteal_direct (3.4+), else the
    per-zone pgsteal_<zone> totals of older kernels."""

    name: str
    parts: tuple[Counter, ...]
    fallback: Counter | None = None
    since: str = ""

    @property
    def source(self) -> str:
        return self.parts[0].source

    @property
    def names(self) -> tuple[str, ...]:
        out = tuple(n for p in self.parts for n in p.names)
        return out + (self.fallback.names if self.fallback else ())

    @property
    def file(self) -> str:
        return self.parts[0].file

    def read(self, parsed: Any) -> int | None:
        vals = [v for v in (p.read(parsed) for p in self.parts) if v is not None]
        if vals:
            return sum(vals)
        return self.fallback.read(parsed) if self.fallback is not None else None

    def absent_reason(self) -> str:
        return f"{self.file} has none of {', '.join(self.names)}" + (
            f" ({self.since})" if self.since else "")


def total(name: str, *parts: Counter, fallback: Counter | None = None, since: str = "") -> CounterSum:
    if not parts or len({p.source for p in parts}) != 1:
        raise ValueError(f"{name}: a sum needs counters of one source")
    return CounterSum(name, tuple(parts), fallback, since)


def _check(names: tuple[str, ...], known: frozenset[str], what: str, zoned: bool = False) -> None:
    if not names:
        raise UnknownCounter(f"{what}: no counter name given")
    for n in names:
        if n in known:
            continue
        if zoned and any(f"{n}_{z}" in known for z in ZONE_SUFFIXES):
            continue
        raise UnknownCounter(f"{what}: no kernel has printed a counter named {n!r} "
                             f"(see ksight/model/counter_names.py)")


def vm(*names: str, zoned: bool = True, since: str = "") -> Counter:
    _check(names, counter_names.VMSTAT, "/proc/vmstat", zoned)
    return Counter("vmstat", tuple(names), zoned, since)


def net(group: str, *names: str, since: str = "") -> Counter:
    full = tuple(f"{group}.{n}" for n in names)
    _check(full, counter_names.NET_SNMP, "/proc/net/{snmp,netstat}")
    source = "netstat" if group.endswith("Ext") else "snmp"
    return Counter(source, full, False, since)


def cg(*names: str, since: str = "") -> CgroupCounter:
    _check(names, counter_names.MEMORY_STAT, "memory.stat")
    return CgroupCounter(tuple(names), since)


__all__ = ["Counter", "CounterSum", "CgroupCounter", "UnknownCounter", "vm", "net", "cg", "total"]
