"""/proc/swaps: active swap areas. Sizes are in kB; a header-only file means no swap.

    Filename                Type        Size     Used   Priority
    /dev/zram0              partition   8388604  76     100

The kernel escapes spaces, tabs, newlines and backslashes in the file name as \\ooo octal;
they are decoded here.
"""

from __future__ import annotations

import re
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/swaps"

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class SwapDevice:
    filename: str
    type: str  # "partition" or "file"
    size_kb: int
    used_kb: int
    priority: int


@dataclass(frozen=True)
class Swaps:
    devices: tuple[SwapDevice, ...] = ()

    @property
    def size_kb(self) -> int:
        return sum(d.size_kb for d in self.devices)

    @property
    def used_kb(self) -> int:
        return sum(d.used_kb for d in self.devices)


def parse(text: str, path: str = PATH) -> Swaps:
    require_complete(text, path)
    devices = []
    saw_header = False
    for lineno, line in numbered_lines(text):
        toks = line.split()
        if not saw_header:
            if toks[:1] != ["Filename"]:
                raise ParseError(path, lineno, line, "expected the 'Filename Type Size...' header")
            saw_header = True
            continue
        if len(toks) != 5:
            raise ParseError(path, lineno, line, "expected 'filename type size used priority'")
        name = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), toks[0])
        devices.append(SwapDevice(name, toks[1], to_int(toks[2], path, lineno, line),
                                  to_int(toks[3], path, lineno, line),
                                  to_int(toks[4], path, lineno, line, signed=True)))  # priority %d: -2 by default
    if not saw_header:
        raise ParseError(path, None, None, "empty file (no header)")
    return Swaps(tuple(devices))


def read(root: Root) -> Swaps:
    return parse(root.read_text(PATH))
