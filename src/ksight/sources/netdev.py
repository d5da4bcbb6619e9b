"""/proc/net/dev: per-interface receive and transmit counters.

Two header lines (with '|'), then "  name: 16 numbers". When a counter is wide the kernel prints
no space after the colon ("eth0:874354587"), so the name is split at the colon, not at blanks
(interface names cannot contain ':').
"""

from __future__ import annotations

from dataclasses import fields
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/net/dev"


@dataclass(frozen=True)
class NetDevStats:
    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_drop: int
    rx_fifo: int
    rx_frame: int
    rx_compressed: int
    rx_multicast: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_drop: int
    tx_fifo: int
    tx_colls: int
    tx_carrier: int
    tx_compressed: int


_NFIELDS = len(fields(NetDevStats))


@dataclass(frozen=True)
class NetDev:
    interfaces: dict[str, NetDevStats]


def parse(text: str, path: str = PATH) -> NetDev:
    require_complete(text, path)
    out: dict[str, NetDevStats] = {}
    for lineno, line in numbered_lines(text):
        if "|" in line:
            continue  # the two header lines
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or not name:
            raise ParseError(path, lineno, line, "expected 'iface: counters'")
        toks = rest.split()
        if len(toks) != _NFIELDS:
            raise ParseError(path, lineno, line, f"{len(toks)} counters, expected {_NFIELDS}")
        out[name] = NetDevStats(*(to_int(t, path, lineno, line) for t in toks))
    if not out:
        raise ParseError(path, None, None, "no interfaces (empty or truncated file)")
    return NetDev(out)


def read(root: Root) -> NetDev:
    return parse(root.read_text(PATH))
