"""/proc/net/netstat: Linux-specific network counters (TcpExt, IpExt, MPTcpExt groups).

Same header/values line pairs as /proc/net/snmp (parsed by snmp.parse_groups). TcpExt holds the
counters ksight reasons about most: ListenOverflows, ListenDrops, TCPTimeouts, TW,
TCPMemoryPressures, PruneCalled, TCPRcvQDrop (names vary by kernel, hence `get` -> None).
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..fs import Root
from .snmp import parse_groups

PATH = "proc/net/netstat"


@dataclass(frozen=True)
class Netstat:
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    def get(self, group: str, name: str) -> int | None:
        """netstat.get('TcpExt', 'ListenOverflows'); None when this kernel does not print it."""
        return self.groups.get(group, {}).get(name)


def parse(text: str, path: str = PATH) -> Netstat:
    return Netstat(parse_groups(text, path))


def read(root: Root) -> Netstat:
    return parse(root.read_text(PATH))
