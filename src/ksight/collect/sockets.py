"""The TCP socket table: /proc/net/tcp{,6} joined with owners and with netlink sock_diag.

- /proc/net/tcp and tcp6 give every TCP socket with its state and queues; they are the base and
  stand alone when sock_diag is unavailable.
- Owners come from socket inodes: each process's fd links ("socket:[inode]"). With a process table
  (collect.processes) we use its socket_inodes; without one we scan proc/*/fd through the root.
  A socket held by several processes (after fork) is shown with the lowest pid.
- sock_diag (collect/sockdiag.py) adds, for listeners, the accept queue and its maximum (backlog),
  and for connections a few tcp_info fields (cwnd, rtt, retransmissions, ...). Rows are matched
  on (family, addresses, ports, inode).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

from ..errors import ParseError, Unavailable
from ..fs import Root
from ..model.snapshot import Missing
from ..sources import net_tcp
from ..sources.proc_pid.fd import socket_inodes
from . import sockdiag


@dataclass(frozen=True)
class Sock:
    # from /proc/net/tcp{,6}
    family: str
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    state: str
    tx_queue: int
    rx_queue: int  # LISTEN: accept queue length
    timer_active: int
    timer_expires_ticks: int
    retransmits: int
    uid: int
    inode: int
    # owner, through socket inodes
    pid: int | None = None
    comm: str | None = None
    # sock_diag: listeners
    backlog: int | None = None  # accept queue maximum: min(listen() backlog, somaxconn)
    accept_queue: int | None = None
    # sock_diag: tcp_info of connections
    cwnd: int | None = None
    ssthresh: int | None = None
    rtt_us: int | None = None
    rttvar_us: int | None = None
    retrans: int | None = None
    total_retrans: int | None = None
    lost: int | None = None
    unacked: int | None = None
    snd_mss: int | None = None
    delivery_rate: int | None = None  # bytes per second
    bytes_retrans: int | None = None


@dataclass(frozen=True)
class SocketTable:
    sockets: tuple[Sock, ...]
    diag_available: bool
    diag_reason: str | None

    def by_state(self) -> dict[str, int]:
        return dict(Counter(s.state for s in self.sockets))

    def listeners(self) -> tuple[Sock, ...]:
        return tuple(s for s in self.sockets if s.state == "LISTEN")


_TCP_FIELDS = [f.name for f in fields(net_tcp.TcpSocket)]
_INFO_FIELDS = ("cwnd", "ssthresh", "rtt_us", "rttvar_us", "retrans", "total_retrans", "lost",
                "unacked", "snd_mss", "delivery_rate", "bytes_retrans")


def _comm(root: Root, pid: int) -> str | None:
    try:
        return root.read_text(f"proc/{pid}/comm").strip() or None
    except Unavailable:
        return None


def owners_from_procs(procs: dict) -> dict[int, tuple[int, str | None]]:
    owners: dict[int, tuple[int, str | None]] = {}
    for pid in sorted(procs):
        p = procs[pid]
        for ino in getattr(p, "socket_inodes", None) or ():
            owners.setdefault(ino, (pid, getattr(p, "comm", None)))
    return owners


def scan_owners(root: Root, wanted: set[int]) -> tuple[dict[int, tuple[int, str | None]], int]:
    """inode -> (pid, comm) for the wanted inodes; also how many processes could not be read."""
    owners: dict[int, tuple[int, str | None]] = {}
    denied = 0
    try:
        pids = sorted(int(n) for n in root.listdir("proc") if n.isdigit())
    except Unavailable:
        return owners, 0
    for pid in pids:
        if len(owners) == len(wanted):
            break
        try:
            inodes = socket_inodes(root, pid)
        except Unavailable as u:
            if "permission" in u.reason:
                denied += 1
            continue
        hit = [i for i in inodes if i in wanted and i not in owners]
        if hit:
            comm = _comm(root, pid)
            for i in hit:
                owners[i] = (pid, comm)
    return owners, denied


def collect(root: Root, procs: dict | None = None) -> tuple[SocketTable, list[Missing]]:
    missing: list[Missing] = []
    try:
        table = net_tcp.read(root)
    except Unavailable as u:
        return SocketTable((), False, "no TCP table"), [Missing("sockets", f"{u.source}: {u.reason}")]
    except ParseError as e:
        return SocketTable((), False, "no TCP table"), [Missing("sockets", f"malformed: {e}")]

    wanted = {s.inode for s in table.sockets if s.inode}
    if procs is not None:
        owners = owners_from_procs(procs)
    elif wanted:
        owners, denied = scan_owners(root, wanted)
        if denied:
            missing.append(Missing("sockets.owners",
                                   f"{denied} processes' fds unreadable (permission denied): "
                                   "some sockets show no owner"))
    else:
        owners = {}

    diag = sockdiag.collect(root)
    if not diag.available:
        missing.append(Missing("sockets.diag", diag.reason or "unavailable"))
    by_key = diag.by_key()

    out: list[Sock] = []
    for s in table.sockets:
        kw = {n: getattr(s, n) for n in _TCP_FIELDS}
        if s.inode in owners:
            kw["pid"], kw["comm"] = owners[s.inode]
        d = by_key.get((s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port,
                        s.inode))
        if d is not None:
            if s.state == "LISTEN":
                kw["accept_queue"], kw["backlog"] = d.rqueue, d.wqueue
            elif d.info is not None:
                kw.update({n: d.info.get(n) for n in _INFO_FIELDS})
        out.append(Sock(**kw))
    return SocketTable(tuple(out), diag.available, diag.reason), missing
