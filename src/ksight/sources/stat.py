"""/proc/stat: CPU time per CPU (in USER_HZ ticks, 100 per second on every architecture Linux
exports to user space), context switches, interrupts, forks, runnable/blocked tasks, softirqs.

Old kernels print fewer CPU columns: 2.4 stops after idle; iowait, irq and softirq came in
2.6.0, steal in 2.6.11, guest in 2.6.24, guest_nice in 2.6.33. Columns not printed are None.
Note that the kernel already counts guest time inside user (and guest_nice inside nice), so
adding them again double counts. A CPU that is offline has no cpuN line and is absent from
`cpus`. Lines this parser does not know (2.4's page/swap/disk_io) are skipped.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import bad, clip, numbered_lines, require_complete, to_int

PATH = "proc/stat"

# Order of the numbers on the "softirq" line after the total (kernel/softirq.c softirq_to_name)
SOFTIRQ_NAMES = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED",
                 "HRTIMER", "RCU")

_CPU_FIELDS = ("user_ticks", "nice_ticks", "system_ticks", "idle_ticks", "iowait_ticks",
               "irq_ticks", "softirq_ticks", "steal_ticks", "guest_ticks", "guest_nice_ticks")


@dataclass(frozen=True)
class CpuTimes:
    user_ticks: int
    nice_ticks: int
    system_ticks: int
    idle_ticks: int
    iowait_ticks: int | None = None
    irq_ticks: int | None = None
    softirq_ticks: int | None = None
    steal_ticks: int | None = None
    guest_ticks: int | None = None  # already included in user_ticks
    guest_nice_ticks: int | None = None  # already included in nice_ticks

    @property
    def total_ticks(self) -> int:
        """All time accounted, without double counting guest time."""
        return sum(getattr(self, f) or 0 for f in _CPU_FIELDS[:8])


@dataclass(frozen=True)
class Stat:
    cpu_total: CpuTimes
    cpus: dict[int, CpuTimes] = field(default_factory=dict)
    ctxt_total: int | None = None
    intr_total: int | None = None
    intr_per_irq: tuple[int, ...] = ()  # index = IRQ number (numbered ones only)
    btime: int | None = None  # boot time, seconds since the epoch
    forks_total: int | None = None  # "processes"
    procs_running: int | None = None
    procs_blocked: int | None = None
    softirq_total: int | None = None
    softirq_per_kind: tuple[int, ...] | None = None  # in SOFTIRQ_NAMES order

    def softirq(self, name: str) -> int | None:
        if self.softirq_per_kind is None or name not in SOFTIRQ_NAMES:
            return None
        i = SOFTIRQ_NAMES.index(name)
        return self.softirq_per_kind[i] if i < len(self.softirq_per_kind) else None


def _cpu_times(toks: list[str], path: str, lineno: int, line: str) -> CpuTimes:
    if len(toks) < 4:
        raise ParseError(path, lineno, line, "expected at least 4 CPU time columns")
    vals = [to_int(t, path, lineno, line) for t in toks[:len(_CPU_FIELDS)]]
    return CpuTimes(*vals)


def _ints(toks: list[str], path: str, lineno: int, line: str) -> list[int]:
    if not toks:
        raise ParseError(path, lineno, line, "missing value")
    return [to_int(t, path, lineno, line) for t in toks]


_SCALARS = {"ctxt": "ctxt_total", "btime": "btime", "processes": "forks_total",
            "procs_running": "procs_running", "procs_blocked": "procs_blocked"}


def parse(text: str, path: str = PATH) -> Stat:
    require_complete(text, path)
    kw: dict = {}
    cpus: dict[int, CpuTimes] = {}
    for lineno, line in numbered_lines(text):
        key, *toks = line.split()
        if key == "cpu":
            kw["cpu_total"] = _cpu_times(toks, path, lineno, line)
        elif key.startswith("cpu"):
            n = key[3:]
            if not (n.isascii() and n.isdigit() and len(n) <= 6):
                raise bad(path, lineno, line, f"bad CPU name {clip(key)}")
            cpus[int(n)] = _cpu_times(toks, path, lineno, line)
        elif key in _SCALARS:
            if len(toks) != 1:
                raise ParseError(path, lineno, line, f"expected '{key} N'")
            kw[_SCALARS[key]] = to_int(toks[0], path, lineno, line)
        elif key == "intr":
            vals = _ints(toks, path, lineno, line)
            kw["intr_total"], kw["intr_per_irq"] = vals[0], tuple(vals[1:])
        elif key == "softirq":
            vals = _ints(toks, path, lineno, line)
            kw["softirq_total"], kw["softirq_per_kind"] = vals[0], tuple(vals[1:])
        # anything else (page, swap, disk_io on 2.4 kernels, future lines) is skipped
    if "cpu_total" not in kw:
        raise ParseError(path, None, None, "no 'cpu' line (empty or truncated file?)")
    return Stat(cpus=cpus, **kw)


def read(root: Root) -> Stat:
    return parse(root.read_text(PATH))
