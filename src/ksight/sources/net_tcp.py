"""/proc/net/tcp and /proc/net/tcp6: the TCP socket table.

    sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
     0: 0100007F:0016 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 2740 ...

Columns (net/ipv4/tcp_ipv4.c get_tcp4_sock): addresses and ports, state, tx_queue:rx_queue,
timer:expiry, retransmits and state are hex; uid, probes ("timeout") and inode are decimal.
For a LISTEN socket rx_queue is the accept queue length (connections waiting for accept());
otherwise it is the unread receive bytes and tx_queue the unacknowledged send bytes.
TIME_WAIT and NEW_SYN_RECV rows have zero queues, uid 0 and inode 0.

Addresses: the kernel prints each 32-bit word of the (network-order) address with %08X as a
host-order integer, so on a little-endian host 127.0.0.1 reads "0100007F". Decoding therefore
depends on the byte order of the host that wrote the text: `parse` takes it (little by default,
as on x86 and arm64); a capture from a big-endian host (s390x, ppc64) must be parsed with
byteorder="big". Ports are printed after ntohs, so they need no swapping.
"""

from __future__ import annotations

import _socket as socket  # the C module: socket.py builds its IntEnums (~2.5 ms of start-up)
import sys
from collections import Counter
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root
from ._text import numbered_lines, require_complete, to_hex, to_int

PATH = "proc/net/tcp"
PATH6 = "proc/net/tcp6"

STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "NEW_SYN_RECV", 13: "BOUND_INACTIVE",
}


def state_name(n: int) -> str:
    return STATES.get(n, f"STATE_{n}")


@dataclass(frozen=True)
class TcpSocket:
    family: str  # 'inet' | 'inet6'
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    state: str
    tx_queue: int
    rx_queue: int  # LISTEN: accept queue length
    timer_active: int  # 0 none, 1 retransmit/probe, 2 keepalive, 3 TIME_WAIT, 4 zero window probe
    timer_expires_ticks: int  # USER_HZ ticks until the timer fires (may be negative)
    retransmits: int
    uid: int
    inode: int


@dataclass(frozen=True)
class TcpTable:
    sockets: tuple[TcpSocket, ...]

    def by_state(self) -> dict[str, int]:
        return dict(Counter(s.state for s in self.sockets))


def decode_addr(hexaddr: str, byteorder: str = "little") -> str:
    """'0100007F' -> '127.0.0.1'; 32 hex digits -> an IPv6 address (words in host order)."""
    if len(hexaddr) not in (8, 32):
        raise ValueError(f"address of {len(hexaddr)} hex digits")
    raw = b"".join(int(hexaddr[i:i + 8], 16).to_bytes(4, byteorder)
                   for i in range(0, len(hexaddr), 8))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _hex(tok: str, path: str, lineno: int, line: str) -> int:
    return to_hex(tok, path, lineno, line)


def parse(text: str, path: str = PATH, *, family: str | None = None,
          byteorder: str = "little") -> TcpTable:
    """Parse one table. family defaults from the path ('tcp6' -> 'inet6').

    An empty table (header only) is valid: a host may have no TCP sockets in this family.
    A file without even the header is a ParseError."""
    fam = family or ("inet6" if path.endswith("6") else "inet")
    require_complete(text, path)
    socks: list[TcpSocket] = []
    header = False
    for lineno, line in numbered_lines(text):
        toks = line.split()
        if toks[0] == "sl":
            header = True
            continue
        if len(toks) < 10 or not toks[0].endswith(":"):
            raise ParseError(path, lineno, line, "expected at least 10 columns after 'N:'")
        try:
            la, lp = toks[1].split(":")
            ra, rp = toks[2].split(":")
            txq, rxq = toks[4].split(":")
            tr, when = toks[5].split(":")
            local = decode_addr(la, byteorder)
            remote = decode_addr(ra, byteorder)
        except ValueError as exc:
            raise ParseError(path, lineno, line, f"malformed address or queue column ({exc})") from None
        h = lambda t: _hex(t, path, lineno, line)  # noqa: E731
        when_v = h(when)
        # %08lX of a clock_t: a negative delta (old kernels) shows as 16 hex digits on 64-bit
        if len(when) > 8 and when_v >= 1 << 63:
            when_v -= 1 << 64
        socks.append(TcpSocket(
            family=fam, local_addr=local, local_port=h(lp), remote_addr=remote, remote_port=h(rp),
            state=state_name(h(toks[3])), tx_queue=h(txq), rx_queue=h(rxq),
            timer_active=h(tr), timer_expires_ticks=when_v, retransmits=h(toks[6]),
            uid=to_int(toks[7], path, lineno, line), inode=to_int(toks[9], path, lineno, line),
        ))
    if not header and not socks:
        raise ParseError(path, None, None, "empty file")
    return TcpTable(tuple(socks))


def host_byteorder(root: Root) -> str:
    """Byte order of the host that wrote the tables: this machine's when live, else little."""
    return sys.byteorder if root.live else "little"


def read(root: Root, base: str = "proc/net") -> TcpTable:
    """Both tables; tcp6 missing (IPv6 disabled) gives the IPv4 sockets only.

    `base` picks the network namespace: "proc/net" is the reader's own, "proc/PID/net" the one
    process PID lives in (how sockets of every namespace are read, live and from a capture)."""
    order = host_byteorder(root)
    path, path6 = f"{base}/tcp", f"{base}/tcp6"
    v4 = parse(root.read_text(path), path, byteorder=order)
    try:
        v6 = parse(root.read_text(path6), path6, byteorder=order)
    except Unavailable:
        return v4
    return TcpTable(v4.sockets + v6.sockets)
