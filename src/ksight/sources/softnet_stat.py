"""/proc/net/softnet_stat: per-CPU packet processing in the receive softirq (NET_RX).

One row per CPU, columns of %08x hex. What the columns mean (net/core/net-procfs.c):

    0 processed       packets taken off the backlog / NAPI
    1 dropped         packets dropped because the backlog was full (netdev_max_backlog)
    2 time_squeeze    NET_RX ran out of budget or time with work left (netdev_budget[_usecs])
    3..7              always 0 (were fastroute counters)
    8 cpu_collision   0 since 4.x (was a real counter on old kernels)
    9 received_rps    RPS IPIs received (2.6.35+)
   10 flow_limit_count (3.14+)
   11 backlog_len     input_qlen + process_qlen now (5.10+)
   12 cpu index       (5.10+)
   13 input_qlen, 14 process_qlen (6.x)

Rows have 9 to 15 columns depending on the kernel; fewer than 9 is malformed. The CPU index is
column 12 when present. Older kernels (before 5.10) print no index AND skip offline CPUs, so the
row number is only the CPU number when all CPUs up to it are online: on such kernels `cpu` is
the row index and may not be the real CPU id.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_hex

PATH = "proc/net/softnet_stat"
MIN_COLUMNS = 9


@dataclass(frozen=True)
class SoftnetCpu:
    cpu: int
    processed: int
    dropped: int
    time_squeeze: int
    cpu_collision: int
    received_rps: int | None
    flow_limit_count: int | None
    backlog_len: int | None
    input_qlen: int | None
    process_qlen: int | None
    cpu_from_kernel: bool  # False: cpu is the row index (old kernel; offline CPUs were skipped)
    columns: int


@dataclass(frozen=True)
class SoftnetStat:
    cpus: tuple[SoftnetCpu, ...]

    def total(self, name: str) -> int | None:
        """Sum of one column over CPUs; None when no row has it."""
        vals = [getattr(c, name) for c in self.cpus if getattr(c, name) is not None]
        return sum(vals) if vals else None


def parse(text: str, path: str = PATH) -> SoftnetStat:
    require_complete(text, path)
    rows = []
    for row, (lineno, line) in enumerate(numbered_lines(text)):
        toks = line.split()
        if len(toks) < MIN_COLUMNS:
            raise ParseError(path, lineno, line, f"{len(toks)} columns, expected at least {MIN_COLUMNS}")
        v = [to_hex(t, path, lineno, line) for t in toks]  # %08x columns

        def col(i: int) -> int | None:
            return v[i] if len(v) > i else None

        rows.append(SoftnetCpu(
            cpu=v[12] if len(v) > 12 else row,
            processed=v[0], dropped=v[1], time_squeeze=v[2], cpu_collision=v[8],
            received_rps=col(9), flow_limit_count=col(10), backlog_len=col(11),
            input_qlen=col(13), process_qlen=col(14),
            cpu_from_kernel=len(v) > 12, columns=len(v),
        ))
    if not rows:
        raise ParseError(path, None, None, "empty file")
    return SoftnetStat(tuple(rows))


def read(root: Root) -> SoftnetStat:
    return parse(root.read_text(PATH))
