"""/proc/interrupts: interrupt counts per IRQ per online CPU.

    <header: CPU0 CPU1 ...>
    LABEL: <one count per CPU> [chip [hwirq-trigger] [name[, name...]]]
Numeric labels are device IRQs: the text after the counts starts with the irq chip
("IR-PCI-MSI", "GICv3", "IO-APIC"); the rest ("512000-edge xhci_hcd", "27 Level arch_timer")
is kept as `description`, tokens joined by one space (what node_exporter calls "devices" and
telegraf "device"). Named labels (LOC, NMI, IPI0, s390's EXT) are architecture counters with
a text description and no chip. ERR and MIS (x86) and Err (arm) print one total, not one count
per CPU: per_cpu=(n,) and total_only=True.

The header lists online CPUs by number (holes where CPUs are offline), so `cpus` comes from it.
A label may be glued to its first count on arm64 ("IPI0:2768808080"): we split on the colon.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int
from .softirqs import parse_cpu_header

PATH = "proc/interrupts"
_TOTALS = ("ERR", "MIS")  # upper-cased; arm prints "Err"


@dataclass(frozen=True)
class Irq:
    name: str  # label before ':' ('24', 'LOC', 'IPI0', 'ERR')
    per_cpu: tuple[int, ...]  # in header order; (total,) when total_only
    chip: str | None = None  # numeric IRQs only
    description: str | None = None
    total_only: bool = False

    @property
    def total(self) -> int:
        return sum(self.per_cpu)

    @property
    def numeric(self) -> bool:
        return self.name.isdigit()


@dataclass(frozen=True)
class Interrupts:
    cpus: tuple[int, ...] = ()
    irqs: dict[str, Irq] = field(default_factory=dict)

    def total(self, name: str) -> int | None:
        irq = self.irqs.get(name)
        return None if irq is None else irq.total

    def per_cpu(self, name: str) -> dict[int, int] | None:
        irq = self.irqs.get(name)
        if irq is None or irq.total_only:
            return None
        return dict(zip(self.cpus, irq.per_cpu))


def _is_count(tok: str) -> bool:
    return tok.isascii() and tok.isdigit()


def parse(text: str, path: str = PATH) -> Interrupts:
    require_complete(text, path)
    lines = list(numbered_lines(text))
    if not lines:
        raise ParseError(path, None, None, "empty file")
    cpus = parse_cpu_header(lines[0][1], path, lines[0][0])
    n = len(cpus)
    irqs: dict[str, Irq] = {}
    last = lines[-1][0]
    for lineno, line in lines[1:]:
        label, sep, rest = line.partition(":")
        label = label.strip()
        if not sep or not label or " " in label:
            raise ParseError(path, lineno, line, "expected 'LABEL: counts...'")
        toks = rest.split()
        k = 0
        while k < len(toks) and k < n and _is_count(toks[k]):
            k += 1
        counts = tuple(to_int(t, path, lineno, line) for t in toks[:k])
        tail = toks[k:]
        single = k == 1 and not tail
        if single and lineno == last and not text.endswith("\n") and label.upper() not in _TOTALS:
            raise ParseError(path, lineno, line, "last line cut short (no newline, one count)")
        if k == n:
            total_only = n == 1 and single and label.upper() in _TOTALS
        elif single:
            total_only = True  # ERR:, MIS:, Err: print one total
        else:
            raise ParseError(path, lineno, line, f"expected {n} per-CPU counts, got {k}")
        chip = desc = None
        if tail:
            if label.isdigit():
                chip = tail[0]
                desc = " ".join(tail[1:]) or None
            else:
                desc = " ".join(tail)
        irqs[label] = Irq(name=label, per_cpu=counts, chip=chip, description=desc, total_only=total_only)
    return Interrupts(cpus, irqs)


def read(root: Root) -> Interrupts:
    return parse(root.read_text(PATH))
