"""/proc/net/sockstat and /proc/net/sockstat6: sockets in use per protocol.

    sockets: used 1602
    TCP: inuse 35 orphan 0 tw 4 alloc 59 mem 22
    FRAG: inuse 0 memory 0

Each line is "PROTO: key value key value ...". TCP mem is in pages (compare it with the
net.ipv4.tcp_mem sysctl, also in pages); FRAG memory is in bytes. sockstat6 has no "sockets:"
line, so sockets_used is None there.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/net/sockstat"
PATH6 = "proc/net/sockstat6"


@dataclass(frozen=True)
class Sockstat:
    sockets_used: int | None
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    def get(self, group: str, name: str) -> int | None:
        """sockstat.get('TCP', 'orphan'); None when the line or key is absent."""
        return self.groups.get(group, {}).get(name)


def parse(text: str, path: str = PATH) -> Sockstat:
    require_complete(text, path)
    used: int | None = None
    groups: dict[str, dict[str, int]] = {}
    for lineno, line in numbered_lines(text):
        name, sep, rest = line.partition(":")
        name = name.strip()
        toks = rest.split()
        if not sep or not name or " " in name:
            raise ParseError(path, lineno, line, "expected 'PROTO: key value ...'")
        if not toks or len(toks) % 2:
            raise ParseError(path, lineno, line, "expected key/value pairs")
        # printed with %d / %ld (net/ipv4/proc.c sockstat_seq_show): signed
        vals = {toks[i]: to_int(toks[i + 1], path, lineno, line, signed=True) for i in range(0, len(toks), 2)}
        if name == "sockets":
            used = vals.get("used")
        else:
            groups[name] = vals
    if used is None and not groups:
        raise ParseError(path, None, None, "empty file")
    return Sockstat(used, groups)


def parse6(text: str, path: str = PATH6) -> Sockstat:
    return parse(text, path)


def read(root: Root) -> Sockstat:
    return parse(root.read_text(PATH))


def read6(root: Root) -> Sockstat:
    return parse(root.read_text(PATH6), PATH6)
