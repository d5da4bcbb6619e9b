"""The mapping diff of a process over a window: which mappings appeared and which grew.

The data is the `process_maps` source (sources/process_maps.py: smaps, or maps, of the few
processes that grow). A mapping is matched across two reads by its start address (a mapping
keeps it for its lifetime) or, failing that, by its end (a [heap] grows upwards from a fixed
start, a [stack] or a mapping grown with MAP_GROWSDOWN downwards to a fixed end). One public
function for every user: the memory rules (diagnose/rules/memory/process_growth.py) cite it as
evidence, `ksight leak` (views/leak.py) lists it.

Plain data only: no text here (render/ formats it).
"""

from __future__ import annotations

from collections import Counter as _Tally
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

SOURCE = "process_maps"


@dataclass(frozen=True)
class MappingChange:
    """One mapping that appeared, or grew, between the first and the last read."""

    start: int
    end: int
    perms: str
    pathname: str  # '' anonymous, '[heap]', '[stack]', a file
    kind: str  # heap, stack, anon, shm, file (sources.process_maps.KINDS)
    size_kb: int  # now
    growth_kb: int  # size_kb for a new mapping
    old_size_kb: int | None  # None for a new mapping
    rss_kb: int | None  # None when read from maps (no page-table walk)
    new: bool

    def label(self) -> str:
        return f"{self.start:x}-{self.end:x} {self.perms} {self.pathname or '[anon]'}"


@dataclass(frozen=True)
class MappingDiff:
    pid: int
    reads: int  # snapshots that hold this process's mappings (the diff needs 2)
    source: str  # the file read at the last of them: /proc/PID/smaps
    new: tuple[MappingChange, ...]  # in address order
    grown: tuple[MappingChange, ...]  # largest growth first
    step_kb: int | None  # the smallest growth between two reads of the largest grown anonymous
    # mapping (adjacent mmaps of one protection merge into one mapping that grows by steps)

    def growth_kb(self, *kinds: str) -> int:
        """kB that appeared or grew, in mappings of these kinds (all kinds when none named)."""
        return sum(c.growth_kb for c in self.new + self.grown if not kinds or c.kind in kinds)

    def recurring(self, *kinds: str) -> tuple[int, int] | None:
        """(size kB, count) of the most common size among the new mappings of these kinds: an
        mmap call repeated without munmap. None without new mappings."""
        sizes = _Tally(c.size_kb for c in self.new if not kinds or c.kind in kinds)
        return sizes.most_common(1)[0] if sizes else None


def maps_per_snapshot(series, key) -> list:
    """ProcMaps of process `key` ((pid, start time)) per snapshot of the series: None where it
    was not read, or where that PID was another process (another start time)."""
    out = []
    for s, table in zip(series.snapshots, series.entities("processes")):
        pm = s.get(SOURCE)
        got = pm.procs.get(key[0]) if pm is not None else None
        out.append(got if got is not None and key in table else None)
    return out


def _change(m, old) -> MappingChange:
    return MappingChange(m.start, m.end, m.perms, m.pathname, m.kind, m.size_kb,
                         m.size_kb - (old.size_kb if old is not None else 0),
                         None if old is None else old.size_kb, m.rss_kb, old is None)


def _step_kb(seen, m) -> int | None:
    sizes = []
    for pm in seen:
        got = next((x for x in pm.regions if x.start == m.start or x.end == m.end), None)
        sizes.append(None if got is None else got.size_kb)
    steps = [b - a for a, b in zip(sizes, sizes[1:]) if a is not None and b is not None and b > a]
    return min(steps) if steps else None


def diff(seen: list) -> MappingDiff | None:
    """The diff between the first and the last of a process's ProcMaps reads (None values
    skipped); None with fewer than two reads."""
    seen = [m for m in seen if m is not None]
    if len(seen) < 2:
        return None
    a, b = seen[0], seen[-1]
    before = {m.start: m for m in a.regions}
    ends = {m.end: m for m in a.regions}
    new, grown = [], []
    for m in b.regions:
        old = before.get(m.start) or ends.get(m.end)
        if old is None:
            new.append(_change(m, None))
        elif m.size_kb > old.size_kb:
            grown.append((m, _change(m, old)))
    grown.sort(key=lambda x: (-x[1].growth_kb, x[1].start))
    big = max((m for m, _ in grown if m.kind == "anon"), key=lambda m: m.size_kb, default=None)
    return MappingDiff(b.pid, len(seen), b.path, tuple(sorted(new, key=lambda c: c.start)),
                       tuple(c for _, c in grown), _step_kb(seen, big) if big is not None else None)


def diff_of(series, key) -> MappingDiff | None:
    """The mapping diff of process `key` over the series (see diff)."""
    return diff(maps_per_snapshot(series, key))
