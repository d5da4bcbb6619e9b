"""The TCP socket table of every network namespace, joined with owners and with sock_diag.

- Namespaces: the distinct /proc/PID/ns/net link targets ("net:[4026531992]"), read through the
  root, so a capture names them too. Containers live in namespaces of their own; a namespace
  without any process in it (an `ip netns add` nobody entered) is not seen.
- sock_diag (collect/sockdiag.py) is asked first, inside each namespace. Where every family's
  dump decodes, the dumps are that namespace's table (sockdiag.table_rows: the columns of
  /proc/net/tcp plus cookie, backlog and tcp_info) and /proc/PID/net/tcp{,6} is not read: parsing
  both cost ~0.25 s at 10,000 sockets for the same rows. The capture's index says so
  ("table": "sock_diag"), so replay builds the same table from the same bytes.
- Elsewhere (sock_diag unavailable or not understood there, or a capture made before) /proc/PID/
  net/tcp{,6} of one process per namespace gives every TCP socket of that namespace with its
  state and queues, and what sock_diag did give is joined to it as before.
  Without any readable namespace link (a capture made before namespaces were collected, or
  links hidden from a non-root user) /proc/net/tcp{,6}, our own namespace, is read instead.
- Owners come from socket inodes, which are unique machine-wide whatever the namespace: each
  process's fd links ("socket:[inode]"). With a process table (collect.processes) we use its
  socket_inodes; without one we scan proc/*/fd through the root. A socket held by several
  processes (after fork) is shown with the lowest pid.
- sock_diag adds the socket cookie (the kernel's id for a socket), for listeners the accept
  queue and its maximum (backlog), and for connections a few tcp_info fields (cwnd, rtt,
  retransmissions, ...). Joined to /proc rows, they are matched on (netns, family, addresses,
  ports, inode).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import fields
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import LiveRoot, Root
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
    rto_us: int | None = None  # tcp_info: the retransmission timeout now
    rcv_space: int | None = None  # tcp_info: receive autotuning's per-RTT estimate (bytes)
    last_data_recv_ms: int | None = None  # tcp_info: ms since data last arrived (idle time)
    # tcp_info (4.10+): usec with data to send, and of it held back by the peer's receive window
    # or by the socket's own send buffer (what `ss -ti` prints as busy, rwnd_limited,
    # sndbuf_limited); over the connection's life
    busy_time_us: int | None = None
    rwnd_limited_us: int | None = None
    sndbuf_limited_us: int | None = None
    # sock_diag INET_DIAG_SKMEMINFO: the socket's buffer sizes now (bytes)
    rcvbuf: int | None = None
    sndbuf: int | None = None
    # identity: the socket's network namespace (inode of /proc/PID/ns/net; None when the
    # table came from proc/net/tcp without a namespace link) and its sock_diag cookie
    netns: int | None = None
    cookie: int | None = None


@dataclass(frozen=True)
class SocketTable:
    sockets: tuple[Sock, ...]
    diag_available: bool  # sock_diag answered in at least one namespace
    diag_reason: str | None  # why it did not, per namespace, where it did not
    namespaces: tuple[int, ...] = ()  # network namespaces whose tables were read
    # netns -> a few pids in it, ascending (the processes whose /proc/PID/net/* show it)
    ns_pids: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def by_cookie(self) -> dict[int, Sock]:
        """Sockets sock_diag named, by cookie (rows without a cookie are left out)."""
        return {s.cookie: s for s in self.sockets if s.cookie is not None}

    def by_state(self) -> dict[str, int]:
        return dict(Counter(s.state for s in self.sockets))

    def listeners(self) -> tuple[Sock, ...]:
        return tuple(s for s in self.sockets if s.state == "LISTEN")


_TCP_FIELDS = [f.name for f in fields(net_tcp.TcpSocket)]
_SOCK_FIELDS = {f.name for f in fields(Sock)}
_INFO_FIELDS = ("cwnd", "ssthresh", "rtt_us", "rttvar_us", "retrans", "total_retrans", "lost",
                "unacked", "snd_mss", "delivery_rate", "bytes_retrans", "rto_us", "rcv_space",
                "last_data_recv_ms", "busy_time_us", "rwnd_limited_us", "sndbuf_limited_us")


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


def namespaces(root: Root, pids: list[int]) -> tuple[dict[int, list[int]], int]:
    """netns inode -> the pids in it (ascending), from /proc/PID/ns/net; and how many processes'
    links could not be read for lack of permission."""
    from ..fs.netns import parse_link

    out: dict[int, list[int]] = {}
    denied = 0
    if type(root) is LiveRoot:  # the same links without the Root's path handling (1,000s of them)
        proc = os.path.join(root.base, "proc")
        readlink = os.readlink
        parsed: dict[str, int | None] = {}  # link -> netns: a machine has a few distinct links
        for pid in pids:
            try:
                link = readlink(f"{proc}/{pid}/ns/net")
            except PermissionError:
                denied += 1
                continue
            except OSError:
                continue
            ns = parsed.get(link, False)
            if ns is False:
                ns = parsed[link] = parse_link(link)
            if ns is not None:
                out.setdefault(ns, []).append(pid)
        return out, denied
    for pid in pids:
        try:
            ns = parse_link(root.readlink(f"proc/{pid}/ns/net"))
        except Unavailable as u:
            denied += "permission" in u.reason
            continue
        if ns is not None:
            out.setdefault(ns, []).append(pid)
    return out, denied


_TRIES_PER_NS = 8  # processes of one namespace tried for its tables (one may exit meanwhile)


def _tables(root: Root, nsmap: dict[int, list[int]], missing: list[Missing]):
    """[(netns, TcpSocket)] and netns -> the pid whose tables were read."""
    rows: list[tuple[int | None, net_tcp.TcpSocket]] = []
    used: dict[int, int] = {}
    for ns in sorted(nsmap):
        why = "no process left in it"
        for pid in nsmap[ns][:_TRIES_PER_NS]:
            try:
                t = net_tcp.read(root, f"proc/{pid}/net")
            except Unavailable as u:
                why = f"{u.source}: {u.reason}"
                continue
            except ParseError as e:
                why = f"malformed: {e}"
                break
            used[ns] = pid
            rows.extend((ns, x) for x in t.sockets)
            break
        if ns not in used:
            missing.append(Missing("sockets.netns", f"netns {ns}: TCP table not read ({why})"))
    return rows, used


def _owners_denied(denied: int) -> Missing:
    return Missing("sockets.owners", f"{denied} processes' fds unreadable (permission denied): "
                                     "some sockets show no owner")


def add_owners(root: Root, snaps: list, states: Iterable[str]) -> list:
    """The snapshots again, their sockets in `states` ("*": any) named with their owner (pid,
    comm): for a socket table collected without owners (Plan.owners_later). One scan of the
    processes' fds now, for the inodes of every snapshot, stopped as soon as all are found;
    a socket closed since (or held by no process) keeps no owner. Snapshots with nothing to
    add are returned as they are (the same objects)."""
    import dataclasses

    states = set(states)
    every = "*" in states

    def want(k) -> bool:
        return bool(k.inode) and k.pid is None and (every or k.state in states)

    wanted = {k.inode for x in snaps if x.sockets is not None for k in x.sockets.sockets
              if want(k)}
    if not wanted:
        return list(snaps)
    owners, denied = scan_owners(root, wanted)
    out = []
    for x in snaps:
        t = x.sockets
        if t is None or not any(want(k) and k.inode in owners for k in t.sockets):
            out.append(x)
            continue
        socks = []
        for k in t.sockets:
            o = owners.get(k.inode) if want(k) else None
            if o is not None:
                d = dict(k.__dict__)
                d["pid"], d["comm"] = o
                k = _new(Sock)
                _setattr(k, "__dict__", d)
            socks.append(k)
        extra = (_owners_denied(denied),) if denied else ()
        out.append(dataclasses.replace(x, sockets=dataclasses.replace(t, sockets=tuple(socks)),
                                       unavailable=x.unavailable + extra))
    return out


_ROW_NAMES = sockdiag.ROW_FIELDS
_new = object.__new__
_setattr = object.__setattr__


def collect(root: Root, procs: dict | None = None, *,
            owners: bool = True) -> tuple[SocketTable, list[Missing]]:
    """The socket table; `owners=False` leaves every pid/comm None (add_owners fills the
    sockets a finding names, later)."""
    missing: list[Missing] = []
    if procs is not None:
        pids = sorted(procs)
    else:
        try:
            pids = sorted(int(n) for n in root.listdir("proc") if n.isdigit())
        except Unavailable:
            pids = []
    nsmap, denied = namespaces(root, pids)
    if denied:
        missing.append(Missing("sockets.netns",
                               f"{denied} processes' network namespace unreadable (permission "
                               "denied): sockets in other namespaces may be missing"))
    # sock_diag first: where it answers for every family, its dumps are the namespace's table
    if root.live:
        ask = {ns: ps[:_TRIES_PER_NS] for ns, ps in nsmap.items()} or {None: [None]}
        results = sockdiag.collect(root, ask)
    else:
        results = sockdiag.collect(root)
    whole = {ns: r for ns, r in results.items() if r.rows is not None
             and (ns in nsmap if nsmap else ns is None)}
    rows, used = _tables(root, {ns: ps for ns, ps in nsmap.items() if ns not in whole}, missing)
    if not used and not whole:
        # no namespace link readable: our own namespace's tables, as before namespaces were seen
        try:
            table = net_tcp.read(root)
        except Unavailable as u:
            return SocketTable((), False, "no TCP table"), [
                Missing("sockets", f"{u.source}: {u.reason}")]
        except ParseError as e:
            return SocketTable((), False, "no TCP table"), [Missing("sockets", f"malformed: {e}")]
        rows = [(None, x) for x in table.sockets]

    if not owners:
        owners = {}
    elif procs is not None:
        owners = owners_from_procs(procs)
    else:
        wanted = {s.inode for _, s in rows if s.inode}
        for r in whole.values():
            wanted.update(row["inode"] for row in r.rows if row["inode"])
        owners = {}
        if wanted:
            owners, denied = scan_owners(root, wanted)
            if denied:
                missing.append(_owners_denied(denied))

    fails = []
    for ns, r in results.items():
        if not r.available or r.reason:
            fails.append(f"netns {ns}: {r.reason or 'unavailable'}" if ns is not None
                         else (r.reason or "unavailable"))
    available = any(r.available for r in results.values())
    reason = "; ".join(fails) or (None if results else "not in capture")
    if reason:
        missing.append(Missing("sockets.diag", reason))
    by_key = {(ns, *k): d for ns, r in results.items() for k, d in r.by_key().items()}
    lone = list(results) == [None]  # a capture of format 1, or our own namespace unnamed

    out: list[Sock] = []
    # the namespaces sock_diag gave whole: rows in Sock's fields, built as processes.py builds
    # its frozen dataclasses (object.__new__ and the __dict__), 10,000s of them per sample
    get_owner = owners.get
    for ns in sorted(whole, key=lambda x: -1 if x is None else x):
        for d in whole[ns].rows:  # made for this: every Sock field, pid and comm None
            ino = d["inode"]
            if ino:
                o = get_owner(ino)
                if o is not None:
                    d["pid"], d["comm"] = o
            sock = _new(Sock)
            _setattr(sock, "__dict__", d)
            out.append(sock)
    for ns, s in rows:
        kw = {n: getattr(s, n) for n in _TCP_FIELDS}
        kw["netns"] = ns
        if s.inode in owners:
            kw["pid"], kw["comm"] = owners[s.inode]
        k = (s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.inode)
        d = by_key.get((ns, *k)) or (by_key.get((None, *k)) if lone else None)
        if d is not None:
            kw["cookie"] = d.cookie
            kw["rcvbuf"], kw["sndbuf"] = d.rcvbuf, d.sndbuf
            if s.state == "LISTEN":
                kw["accept_queue"], kw["backlog"] = d.rqueue, d.wqueue
            elif d.info is not None:
                kw.update({n: d.info.get(n) for n in _INFO_FIELDS})
        out.append(Sock(**kw))
    spaces = set(used) | {ns for ns in whole if ns is not None}
    ns_pids = tuple((ns, tuple(nsmap[ns][:_TRIES_PER_NS])) for ns in sorted(nsmap))
    return SocketTable(tuple(out), available, reason, tuple(sorted(spaces)), ns_pids), missing


assert set(_ROW_NAMES) == _SOCK_FIELDS, "sockdiag.ROW_FIELDS must name Sock's fields"
