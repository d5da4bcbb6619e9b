"""/proc/diskstats: cumulative I/O counters per block device (Documentation/admin-guide/iostats.rst).

A row is `major minor name` followed by a kernel-dependent number of counters:
- 11 counters (14 fields): reads, merges, sectors, ms for reads and writes; in-flight, io_ms,
  weighted io_ms. Every kernel since 2.6.25 (and whole disks before that).
- 15 counters (18 fields): + discards completed/merged/sectors/ms (4.18+).
- 17 counters (20 fields): + flush requests completed/ms (5.5+).
- 4 counters (7 fields): partitions on 2.6.0-2.6.24 (reads, sectors read, writes, sectors
  written); every other counter is None there.
Counters the kernel did not print are None, never 0. Sectors are always 512 bytes here,
whatever the device's logical block size. Rows of any other length are malformed (a row cut in
the middle); rows longer than 20 fields (a future kernel) keep the fields we know.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/diskstats"
SECTOR_BYTES = 512

_BASE = ("reads_completed", "reads_merged", "sectors_read", "read_ms",
         "writes_completed", "writes_merged", "sectors_written", "write_ms",
         "ios_in_progress", "io_ms", "weighted_io_ms")
_DISCARD = ("discards_completed", "discards_merged", "sectors_discarded", "discard_ms")
_FLUSH = ("flush_completed", "flush_ms")
_OLD_PARTITION = ("reads_completed", "sectors_read", "writes_completed", "sectors_written")


@dataclass(frozen=True)
class DiskStat:
    major: int
    minor: int
    name: str
    reads_completed: int | None = None
    reads_merged: int | None = None
    sectors_read: int | None = None
    read_ms: int | None = None
    writes_completed: int | None = None
    writes_merged: int | None = None
    sectors_written: int | None = None
    write_ms: int | None = None
    ios_in_progress: int | None = None  # a gauge, not a counter
    io_ms: int | None = None
    weighted_io_ms: int | None = None
    discards_completed: int | None = None  # 4.18+
    discards_merged: int | None = None
    sectors_discarded: int | None = None
    discard_ms: int | None = None
    flush_completed: int | None = None  # 5.5+
    flush_ms: int | None = None
    fields: int = 0  # how many fields the row had (7, 14, 18, 20): tells the kernel generation

    @property
    def read_bytes(self) -> int | None:
        return None if self.sectors_read is None else self.sectors_read * SECTOR_BYTES

    @property
    def written_bytes(self) -> int | None:
        return None if self.sectors_written is None else self.sectors_written * SECTOR_BYTES

    @property
    def discarded_bytes(self) -> int | None:
        return None if self.sectors_discarded is None else self.sectors_discarded * SECTOR_BYTES


@dataclass(frozen=True)
class Diskstats:
    devices: dict[str, DiskStat] = field(default_factory=dict)

    def get(self, name: str) -> DiskStat | None:
        return self.devices.get(name)


def _names_for(n: int) -> tuple[str, ...] | None:
    if n == 4:
        return _OLD_PARTITION
    if n == 11:
        return _BASE
    if n == 15:
        return _BASE + _DISCARD
    if n >= 17:
        return _BASE + _DISCARD + _FLUSH
    return None


def parse_row(line: str, path: str = PATH, lineno: int | None = None) -> DiskStat:
    toks = line.split()
    if len(toks) < 3:
        raise ParseError(path, lineno, line, "expected 'major minor name counters...'")
    names = _names_for(len(toks) - 3)
    if names is None:
        raise ParseError(path, lineno, line,
                         f"expected 7, 14, 18 or 20 fields, got {len(toks)} (truncated row?)")
    vals = [to_int(t, path, lineno, line) for t in toks[3:3 + len(names)]]
    return DiskStat(major=to_int(toks[0], path, lineno, line), minor=to_int(toks[1], path, lineno, line),
                    name=toks[2], fields=min(len(toks), 20), **dict(zip(names, vals)))


def parse(text: str, path: str = PATH) -> Diskstats:
    # An empty file is legal: a machine (container) may have no block devices at all.
    require_complete(text, path)
    devices: dict[str, DiskStat] = {}
    for lineno, line in numbered_lines(text):
        d = parse_row(line, path, lineno)
        devices[d.name] = d
    return Diskstats(devices)


def parse_sys_block_stat(text: str, name: str, major: int, minor: int,
                         path: str = "sys/block/stat") -> DiskStat:
    """/sys/block/NAME/stat: the same counters as a diskstats row, without major/minor/name."""
    require_complete(text, path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise ParseError(path, None, None, "expected one line of counters")
    return parse_row(f"{major} {minor} {name} {lines[0]}", path, 1)


def read(root: Root) -> Diskstats:
    return parse(root.read_text(PATH))
