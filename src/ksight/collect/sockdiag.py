"""Netlink sock_diag (inet_diag) for TCP over IPv4 and IPv6: what /proc/net/tcp does not say.

For a LISTEN socket the kernel reports the accept queue length (idiag_rqueue) and its maximum,
the listen() backlog capped by net.core.somaxconn (idiag_wqueue). For a full socket, the
INET_DIAG_INFO attribute carries struct tcp_info (cwnd, ssthresh, rtt, retransmissions, ...), as
`ss -ti` shows it.

There is no file behind this data, so a capture could not hold it by reading files: when the
root is live, the answers are also handed to `store.recording_root.record_extra` under
ksight/sock_diag.json (with the failure reason, if any), and a non-live root is answered from that
file. pyroute2 is imported only here, inside the query, so `ksight` starts fast.

tcp_info grew over the years; fields are taken only when the attribute is long enough to hold
them (delivery_rate since 4.9, bytes_retrans since 4.19), else they are None.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field

from ..errors import Unavailable
from ..fs import Root
from ..sources.net_tcp import state_name
from ..fs import record_extra

CAPTURE_PATH = "ksight/sock_diag.json"
FORMAT = 1
INET_DIAG_INFO = 2
ALL_STATES = (1 << 14) - 1

# name -> (tcp_info attribute key in pyroute2, byte offset, size) in struct tcp_info
TCP_INFO_FIELDS = {
    "retransmits": ("tcpi_retransmits", 2, 1),
    "snd_mss": ("tcpi_snd_mss", 16, 4),
    "unacked": ("tcpi_unacked", 24, 4),
    "lost": ("tcpi_lost", 32, 4),
    "retrans": ("tcpi_retrans", 36, 4),
    "rtt_us": ("tcpi_rtt", 68, 4),
    "rttvar_us": ("tcpi_rttvar", 72, 4),
    "ssthresh": ("tcpi_snd_ssthresh", 76, 4),  # 0x7fffffff: still in initial slow start
    "cwnd": ("tcpi_snd_cwnd", 80, 4),
    "total_retrans": ("tcpi_total_retrans", 100, 4),
    "delivery_rate": ("tcpi_delivery_rate", 160, 8),  # bytes/s, 4.9+
    "bytes_retrans": ("tcpi_bytes_retrans", 208, 8),  # 4.19+
}


@dataclass(frozen=True)
class DiagSock:
    family: str
    state: str
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    inode: int
    uid: int
    rqueue: int  # LISTEN: accept queue length; else unread bytes
    wqueue: int  # LISTEN: accept queue maximum (backlog); else unacked bytes
    info: dict[str, int | None] | None = None  # TCP_INFO_FIELDS names; None without tcp_info

    def key(self) -> tuple:
        return (self.family, self.local_addr, self.local_port, self.remote_addr,
                self.remote_port, self.inode)


@dataclass(frozen=True)
class DiagResult:
    available: bool
    reason: str | None
    sockets: tuple[DiagSock, ...] = field(default_factory=tuple)

    def by_key(self) -> dict[tuple, DiagSock]:
        return {s.key(): s for s in self.sockets}


def _tcp_info(nla) -> dict[str, int | None]:
    length = max(0, int(getattr(nla, "length", 0) or 0) - 4)  # payload after the nla header
    out: dict[str, int | None] = {}
    for name, (key, off, size) in TCP_INFO_FIELDS.items():
        try:
            out[name] = int(nla[key]) if off + size <= length else None
        except (KeyError, TypeError, ValueError):
            out[name] = None
    return out


def query_live() -> list[DiagSock]:
    """Dump TCP sockets of both families with tcp_info. Raises on any failure."""
    from pyroute2 import DiagSocket  # heavy: keep off the startup path

    out: list[DiagSock] = []
    with DiagSocket() as ds:
        ds.bind()
        for af, fam in ((socket.AF_INET, "inet"), (socket.AF_INET6, "inet6")):
            msgs = ds.get_sock_stats(family=af, states=ALL_STATES, protocol=socket.IPPROTO_TCP,
                                     extensions=1 << (INET_DIAG_INFO - 1))
            for m in msgs:
                if m.get("idiag_family", af) != af:
                    continue
                info = None
                for name, val in m.get("attrs", ()):
                    if name == "INET_DIAG_INFO":
                        info = _tcp_info(val)
                out.append(DiagSock(
                    family=fam, state=state_name(int(m["idiag_state"])),
                    local_addr=str(m["idiag_src"]), local_port=int(m["idiag_sport"]),
                    remote_addr=str(m["idiag_dst"]), remote_port=int(m["idiag_dport"]),
                    inode=int(m["idiag_inode"]), uid=int(m["idiag_uid"]),
                    rqueue=int(m["idiag_rqueue"]), wqueue=int(m["idiag_wqueue"]), info=info,
                ))
    return out


def to_json(result: DiagResult) -> bytes:
    doc = {"format": FORMAT, "available": result.available, "reason": result.reason,
           "sockets": [s.__dict__ for s in result.sockets]}
    return json.dumps(doc, separators=(",", ":")).encode()


def from_json(data: bytes) -> DiagResult:
    try:
        doc = json.loads(data)
        socks = tuple(DiagSock(**s) for s in doc.get("sockets", ()))
        return DiagResult(bool(doc["available"]), doc.get("reason"), socks)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return DiagResult(False, f"{CAPTURE_PATH} is malformed ({exc})")


def collect(root: Root) -> DiagResult:
    """Live: ask the kernel (and record the answer for a capture). Else: read the capture."""
    if not root.live:
        try:
            return from_json(root.read_bytes(CAPTURE_PATH))
        except Unavailable:
            return DiagResult(False, "not in capture")
    try:
        result = DiagResult(True, None, tuple(query_live()))
    except ImportError as exc:
        result = DiagResult(False, f"pyroute2 not installed ({exc})")
    except Exception as exc:  # noqa: BLE001 - netlink failures come in many types
        result = DiagResult(False, f"sock_diag failed: {type(exc).__name__}: {exc}")
    record_extra(root, CAPTURE_PATH, to_json(result))
    return result
