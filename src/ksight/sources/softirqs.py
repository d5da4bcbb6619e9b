"""/proc/softirqs: softirq counts per kind (HI, TIMER, NET_TX, NET_RX, BLOCK, IRQ_POLL, TASKLET,
SCHED, HRTIMER, RCU) per CPU.

The header names the CPU columns ("CPU0 CPU1 ..."); the kernel prints every *possible* CPU,
so the numbers come from the header, not from counting. BLOCK_IOPOLL was renamed IRQ_POLL in
4.5: both names are kept as printed. A row with fewer counts than the header is malformed
(usually a file cut in the middle).
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import bad, clip, numbered_lines, require_complete, to_int

PATH = "proc/softirqs"

# The kernel's softirq vectors in number order (enum in include/linux/interrupt.h), as
# /proc/softirqs names them and as the irq:softirq_entry/exit tracepoints number them (`vec`).
VECTORS = ("HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED",
           "HRTIMER", "RCU")


def vector_name(vec: int) -> str:
    """4 -> 'BLOCK'; a vector this list does not know is its number."""
    return VECTORS[vec] if 0 <= vec < len(VECTORS) else str(vec)


def parse_cpu_header(line: str, path: str, lineno: int) -> tuple[int, ...]:
    """'   CPU0  CPU1  CPU7' -> (0, 1, 7) (shared with interrupts)."""
    cpus = []
    for tok in line.split():
        n = tok[3:]
        if not tok.startswith("CPU") or not (n.isascii() and n.isdigit() and len(n) <= 6):
            raise bad(path, lineno, line, f"expected 'CPUn' column names, got {clip(tok)}")
        cpus.append(int(n))
    if not cpus:
        raise ParseError(path, lineno, line, "header names no CPU")
    return tuple(cpus)


@dataclass(frozen=True)
class Softirqs:
    cpus: tuple[int, ...] = ()
    counts: dict[str, tuple[int, ...]] = field(default_factory=dict)  # kind -> per-CPU, header order

    def total(self, kind: str) -> int | None:
        c = self.counts.get(kind)
        return None if c is None else sum(c)

    def per_cpu(self, kind: str) -> dict[int, int] | None:
        c = self.counts.get(kind)
        return None if c is None else dict(zip(self.cpus, c))


def parse(text: str, path: str = PATH) -> Softirqs:
    require_complete(text, path)
    lines = list(numbered_lines(text))
    if not lines:
        raise ParseError(path, None, None, "empty file")
    cpus = parse_cpu_header(lines[0][1], path, lines[0][0])
    counts: dict[str, tuple[int, ...]] = {}
    for lineno, line in lines[1:]:
        name, sep, rest = line.partition(":")
        if not sep or not name.strip():
            raise ParseError(path, lineno, line, "expected 'KIND: counts...'")
        toks = rest.split()
        if len(toks) != len(cpus):
            raise ParseError(path, lineno, line, f"expected {len(cpus)} per-CPU counts, got {len(toks)}")
        counts[name.strip()] = tuple(to_int(t, path, lineno, line) for t in toks)
    return Softirqs(cpus, counts)


def read(root: Root) -> Softirqs:
    return parse(root.read_text(PATH))
