"""/proc/consoles: the consoles printk writes to (fs/proc/consoles.c, show_console_dev).

Each line is the console name and index padded to 21 columns, the operations it supports
(R read, W write, U unblank, '-' for none), its flags in parentheses (E enabled, C the
preferred console /dev/console, B boot console, p printk buffer replayed, b braille,
a usable while a CPU is offline), then major:minor when it has a tty driver:

    ttyS0                -W- (EC  p a)    4:64
    tty0                 -WU (E  p  )    4:1

ksight uses it to tell a serial console (slow: 115200 baud is ~11 KB/s) that every printk at or
above the console log level is written to, synchronously on kernels without an atomic/threaded
console: a large OOM report (one line per task) printed there stalls the machine.
"""

from __future__ import annotations

import re
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/consoles"
_LINE = re.compile(r"^(\S+)\s+([R-][W-][U-])\s+\(([^)]*)\)(?:\s+(\d+):(\d+))?\s*$")
# serial UART drivers' device names (8250, PL011, Samsung, Zynq, Qualcomm, USB serial, OMAP,
# i.MX, Tegra, s390 sclp) and hypervisor consoles (hvc: Xen, virtio-console, POWER), which are
# as slow or slower when the other end reads slowly
SERIAL_PREFIXES = ("ttyS", "ttyAMA", "ttySAC", "ttyPS", "ttyMSM", "ttyUSB", "ttyO", "ttymxc",
                   "ttyTHS", "ttysclp", "ttyLP", "ttyHS", "ttySIF", "ttyGS", "hvc")


@dataclass(frozen=True)
class Console:
    name: str  # with its index: "ttyS0"
    ops: str  # "-W-"
    flags: str  # the letters inside the parentheses, spaces removed: "ECpa"
    major: int | None = None
    minor: int | None = None

    @property
    def enabled(self) -> bool:
        return "E" in self.flags

    @property
    def serial(self) -> bool:
        return self.name.startswith(SERIAL_PREFIXES)


@dataclass(frozen=True)
class Consoles:
    consoles: tuple[Console, ...] = ()

    def serial_enabled(self) -> tuple[Console, ...]:
        return tuple(c for c in self.consoles if c.enabled and c.serial)


def parse(text: str, path: str = PATH) -> Consoles:
    require_complete(text, path)
    out = []
    for lineno, line in numbered_lines(text):
        m = _LINE.match(line)
        if m is None:
            raise ParseError(path, lineno, line, "expected 'NAME OPS (FLAGS) [MAJOR:MINOR]'")
        out.append(Console(m.group(1), m.group(2), m.group(3).replace(" ", ""),
                           to_int(m.group(4), path, lineno, line) if m.group(4) else None,
                           to_int(m.group(5), path, lineno, line) if m.group(5) else None))
    return Consoles(tuple(out))


def read(root: Root) -> Consoles:
    return parse(root.read_text(PATH))
