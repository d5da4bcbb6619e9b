"""/proc/net/snmp: the RFC 1213 MIB counters (Ip, Icmp, IcmpMsg, Tcp, Udp, UdpLite).

The file is made of line pairs: a header line "Tcp: RtoAlgorithm RtoMin ..." followed by a values
line "Tcp: 1 200 ...". Both start with the same group name and hold the same number of fields;
a values line whose count differs from its header is malformed (ParseError), never guessed at.
Names change across kernels (InCsumErrors arrived in 3.10, OutTransmits in 6.3, IcmpMsg columns
depend on the traffic seen), so each group keeps an open dict and `get` returns None for a name
this kernel does not print. Values are signed: Tcp MaxConn is -1 ("no limit").
/proc/net/netstat (TcpExt, IpExt, MPTcpExt) has the same shape and uses `parse_groups` too.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import numbered_lines, require_complete, to_int

PATH = "proc/net/snmp"
_SIGNED = frozenset({"MaxConn"})  # net/ipv4/proc.c: the one %ld field


def parse_groups(text: str, path: str) -> dict[str, dict[str, int]]:
    """Header/value line pairs -> {group: {name: value}}. Empty input is a ParseError.

    Values are unsigned (%lu) except Tcp MaxConn, which the kernel prints with %ld (-1)."""
    require_complete(text, path)
    groups: dict[str, dict[str, int]] = {}
    header: tuple[int, str, str, list[str]] | None = None  # lineno, line, group, names
    for lineno, line in numbered_lines(text):
        group, sep, rest = line.partition(":")
        group = group.strip()
        if not sep or not group or " " in group:
            raise ParseError(path, lineno, line, "expected 'Group: fields'")
        toks = rest.split()
        if header is None:
            if not toks:
                raise ParseError(path, lineno, line, "header line without field names")
            header = (lineno, line, group, toks)
            continue
        _, _, hgroup, names = header
        if group != hgroup:
            raise ParseError(path, lineno, line, f"values line for {group!r} follows a {hgroup!r} header")
        if len(toks) != len(names):
            raise ParseError(path, lineno, line,
                             f"{len(toks)} values for {len(names)} fields in the {group} header")
        groups.setdefault(group, {}).update(
            (n, to_int(v, path, lineno, line, signed=n in _SIGNED)) for n, v in zip(names, toks))
        header = None
    if header is not None:
        lineno, line, group, _ = header
        raise ParseError(path, lineno, line, f"{group} header without a values line (truncated?)")
    if not groups:
        raise ParseError(path, None, None, "empty file")
    return groups


@dataclass(frozen=True)
class Snmp:
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    def get(self, group: str, name: str) -> int | None:
        """snmp.get('Tcp', 'RetransSegs'); None when this kernel does not print it."""
        return self.groups.get(group, {}).get(name)


def parse(text: str, path: str = PATH) -> Snmp:
    return Snmp(parse_groups(text, path))


def read(root: Root) -> Snmp:
    return parse(root.read_text(PATH))
