"""Socket facts, one derivation for the socket table (live, captures) and for the socket summary
a recording keeps instead (sources/socket_summary.py): the TCP rules read them here, so a rule
judges a recording with the same subject it gives live.

- `summarise(table, ...)`: the summary of a collect.sockets.SocketTable (what the recorder stores);
- `listener_reads`, `close_wait_holders`, `fin_wait2`, `destinations`, `state_count`: the facts,
  from the tables of the series' snapshots or, when they hold none, from their summaries;
- `summary_ns_table`: the other namespaces' counters the summary holds, shaped as
  collect/netns_counters.NetnsCounters, so model/tcp.py judges each namespace on a recording too.

A summary is read every few samples and carried between (its taken_at says when): facts over a
window come from the distinct summaries its snapshots hold (`reads`).
"""

from __future__ import annotations

from collections import Counter as _Tally
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..sources.socket_summary import (MAX_DESTINATIONS, MAX_OWNERS, Destination, Listener,
                                      NsTcpCounters, OwnerCount, SocketSummary, StateCount)
from .tcp import per_destination, state_of

VERSION = 3  # SocketSummary.version written by summarise
# the TcpExt counters of other namespaces a summary keeps (model/tcp.py's socket rules' counters)
NS_COUNTERS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "SyncookiesRecv",
               "SyncookiesFailed", "TCPReqQFullDrop", "TCPReqQFullDoCookies",
               "TCPTimeWaitOverflow")
_ANY = ("0.0.0.0", "::", "*", "")


def cw_key(s) -> tuple:
    """A socket's identity across reads: its sock_diag cookie, else its addresses and inode."""
    return ("cookie", s.cookie) if s.cookie else (s.netns, s.inode, s.local_addr, s.local_port,
                                                   s.remote_addr, s.remote_port)


def peers_text(socks) -> str:
    """The three peers with the most sockets: "ADDR (N), ..." (clients: one port each)."""
    return ", ".join(f"{p} ({c})" for p, c in _Tally(x.remote_addr for x in socks).most_common(3))


class SynIndex:
    """SYN_RECV request sockets of a table, by namespace, port and local address: how many belong
    to a listener (its port, at its address or, for a wildcard listener, any)."""

    def __init__(self, socks):
        self._n = _Tally((k.netns, k.local_port, k.local_addr) for k in socks
                         if state_of(k) == "SYN_RECV")
        self._port = _Tally()
        for (ns, port, _a), n in self._n.items():
            self._port[(ns, port)] += n

    def requests(self, addr: str, port: int, netns) -> int:
        if addr in _ANY:
            return self._port[(netns, port)]
        return self._n[(netns, port, addr)]


# ---- the summary -------------------------------------------------------------------------------

def summarise(table, port_range=None, previous: frozenset | None = None,
              ns_counters=None) -> SocketSummary:
    """The summary of a collect.sockets.SocketTable.

    port_range: (low, high) of net.ipv4.ip_local_port_range (destinations are counted in it);
    previous: the CLOSE_WAIT identities of the previous read (`close_wait_keys`), for `held`;
    ns_counters: a collect.netns_counters.NetnsCounters read with the table (its namespaces other
    than ksight's are kept, TcpExt NS_COUNTERS and sockstat only)."""
    socks = table.sockets
    per_state = _Tally((s.netns, state_of(s)) for s in socks)
    per_owner = _Tally((s.pid, s.comm, state_of(s), s.netns) for s in socks)
    owners = sorted(per_owner.items(),
                    key=lambda kv: (-kv[1], kv[0][0] or 0, kv[0][2], kv[0][3] or 0))
    cw: dict = {}
    for s in socks:
        if s.state == "CLOSE_WAIT":
            cw.setdefault((s.pid, s.netns), []).append(s)
    rows = []
    for (pid, comm, st, ns), n in owners[:MAX_OWNERS]:
        if st != "CLOSE_WAIT":
            rows.append(OwnerCount(pid, comm, st, n, ns))
            continue
        mine = cw.get((pid, ns), [])
        idle = sorted(x.last_data_recv_ms for x in mine if x.last_data_recv_ms is not None)
        held = None if previous is None else sum(1 for x in mine if cw_key(x) in previous)
        rows.append(OwnerCount(pid, comm, st, n, ns, held, idle[-1] if idle else None,
                               idle[len(idle) // 2] if idle else None, peers_text(mine) or None))
    syn = SynIndex(socks)
    listeners = tuple(sorted(
        (Listener(s.netns, s.family, s.local_addr, s.local_port, s.pid, s.comm,
                  s.accept_queue if s.accept_queue is not None else s.rx_queue, s.backlog,
                  syn.requests(s.local_addr, s.local_port, s.netns))
         for s in socks if s.state == "LISTEN"),
        key=lambda x: (x.netns or 0, x.local_port, x.family, x.local_addr)))
    lo, hi = (port_range[0], port_range[1]) if port_range and len(port_range) >= 2 else (None, None)
    used, per = per_destination(socks, lo, hi, MAX_DESTINATIONS)
    dests = tuple(Destination(*d) for d in per)
    counters, own = (), None
    if ns_counters is not None:
        own = ns_counters.own
        counters = tuple(_ns_row(c) for ns, c in sorted(ns_counters.namespaces.items())
                         if ns != own and (c.netstat is not None or c.sockstat is not None))
    return SocketSummary(
        sockets=len(socks),
        by_state=tuple(StateCount(ns, st, n) for (ns, st), n in sorted(
            per_state.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1]))),
        by_owner=tuple(rows),
        listeners=listeners,
        namespaces=len(table.namespaces),
        diag_available=table.diag_available,
        owners_truncated=max(0, len(owners) - MAX_OWNERS),
        destinations=dests, port_low=lo, port_high=hi, ports_in_use=used if lo is not None else None,
        counters=counters, own_netns=own, version=VERSION,
    )


def _ns_row(c) -> NsTcpCounters:
    from ..sources.netstat import Netstat

    ns = None
    if c.netstat is not None:
        ext = c.netstat.groups.get("TcpExt") or {}
        ns = Netstat({"TcpExt": {k: ext[k] for k in NS_COUNTERS if k in ext}})
    st = c.sockstat
    if st is not None:  # the TCP line (tw, orphan, inuse, mem) only
        from ..sources.sockstat import Sockstat

        st = Sockstat(st.sockets_used, {"TCP": dict(st.groups.get("TCP") or {})})
    return NsTcpCounters(c.netns, c.pid, ns, st, c.sysctls, c.sysctls_why)


def close_wait_keys(table) -> frozenset:
    """The CLOSE_WAIT identities of a table (what `summarise(previous=...)` compares with)."""
    return frozenset(cw_key(s) for s in table.sockets if s.state == "CLOSE_WAIT")


# ---- reading a series: the table when the snapshots hold it, else the summaries ------------------

def summary_of(snap) -> SocketSummary | None:
    return snap.get("socket_summary") if snap.sockets is None else None


def from_summary(series) -> bool:
    """True when the last snapshot has no socket table but a summary (a recording)."""
    return series.last.sockets is None and series.last.get("socket_summary") is not None


def reads(series) -> list[tuple[int, SocketSummary]]:
    """(index of the snapshot, summary) for each distinct read of the table in the window: a
    summary carried between reads counts once, at the first snapshot that holds it."""
    out, seen = [], set()
    for i, snap in enumerate(series.snapshots):
        sm = summary_of(snap)
        if sm is None:
            continue
        k = (sm.taken_at, id(sm)) if sm.taken_at is None else sm.taken_at
        if k in seen:
            continue
        seen.add(k)
        out.append((i, sm))
    return out


def read_series(series):
    """A Series of the distinct reads of the socket table the window's snapshots hold (the one
    carried into the window included), each timed when the table was read (its taken_at): the
    other namespaces' counters a summary keeps change only there, so their rates are per read
    interval, not per sample. None with fewer than two reads."""
    import dataclasses

    from .series import Series

    key = ("socket reads",)
    if key in series._cache:
        return series._cache[key]
    snaps = []
    for i, sm in reads(series):
        snap = series.snapshots[i]
        at = sm.taken_at if sm.taken_at is not None else snap.taken_at
        snaps.append(dataclasses.replace(snap, taken_at=at, monotonic=None, uptime_s=None))
    got = series._cache[key] = Series(snaps) if len(snaps) >= 2 else None
    return got


@dataclass(frozen=True)
class ListenerRead:
    """One listener as one read of the table saw it."""

    netns: int | None
    family: str
    addr: str
    port: int
    inode: int | None  # None from a summary
    pid: int | None
    comm: str | None
    queue: int | None
    backlog: int | None
    syn_recv: int | None  # SYN_RECV requests to it (None: not known, or not the last read)


def listener_reads(series) -> list[list[ListenerRead]]:
    """Each read of the table in the window (a snapshot's table, or a distinct summary), its
    listeners."""
    if not from_summary(series):
        tables = [snap.sockets for snap in series.snapshots if snap.sockets is not None]
        out = []
        for i, table in enumerate(tables):
            syn = SynIndex(table.sockets) if i == len(tables) - 1 else None  # now: the last read
            out.append([ListenerRead(s.netns, s.family, s.local_addr, s.local_port, s.inode, s.pid,
                                     s.comm, s.accept_queue if s.accept_queue is not None
                                     else s.rx_queue, s.backlog,
                                     syn.requests(s.local_addr, s.local_port, s.netns)
                                     if syn is not None else None)
                        for s in table.listeners()])
        return out
    return [[ListenerRead(x.netns, x.family, x.local_addr, x.local_port, None, x.pid, x.comm,
                          x.queue, x.backlog, x.syn_recv) for x in sm.listeners]
            for _i, sm in reads(series)]


def state_count(snap, state: str, netns: int | None = None) -> int | None:
    """Sockets in `state` now (every namespace for None; SYN_RECV counts request sockets), from
    the table or the summary; None when neither is there."""
    if snap.sockets is not None:
        return sum(1 for s in snap.sockets.sockets if state_of(s) == state
                   and (netns is None or s.netns == netns))
    sm = snap.get("socket_summary")
    if sm is None:
        return None
    names = (state, "NEW_SYN_RECV") if state == "SYN_RECV" else (state,)  # an older summary's
    return sum(c.count for c in sm.by_state
               if c.state in names and (netns is None or c.netns == netns))


# ---- CLOSE_WAIT --------------------------------------------------------------------------------

@dataclass(frozen=True)
class CloseWaitHolder:
    """The CLOSE_WAIT sockets one process holds in one namespace."""

    pid: int | None
    comm: str | None
    netns: int | None
    count: int  # now (the last read)
    held: int | None  # of them, there through the window (live: in every snapshot; recording:
    # already there at the previous read of the table, and never more than the fewest read)
    counts: tuple[int, ...]  # per read of the table in the window
    reads: int  # reads of the table in the window
    oldest_ms: int | None  # the longest idle (tcp_info last_data_recv)
    median_ms: int | None
    peers: str | None  # "ADDR (N), ..."
    held_note: str  # how `held` was judged


def close_wait_count(snap, pid, netns) -> int | None:
    """CLOSE_WAIT sockets held by (pid, netns) in a snapshot's table or summary."""
    if snap.sockets is not None:
        return sum(1 for k in snap.sockets.sockets if k.state == "CLOSE_WAIT" and k.pid == pid
                   and k.netns == netns)
    sm = snap.get("socket_summary")
    if sm is None:
        return None
    return sum(o.count for o in sm.by_owner if o.state == "CLOSE_WAIT" and o.pid == pid
               and o.netns == netns)


def close_wait_holders(series) -> list[CloseWaitHolder]:
    """Every (process, namespace) holding CLOSE_WAIT sockets now, the most first."""
    if from_summary(series):
        return _cw_from_summaries(series)
    snaps = [x for x in series.snapshots if x.sockets is not None]
    if not snaps:
        return []
    per_snap = [{cw_key(k): k for k in x.sockets.sockets if k.state == "CLOSE_WAIT"} for x in snaps]
    last = per_snap[-1]
    persistent = set(last)
    for d in per_snap[:-1]:
        persistent &= set(d)
    by_owner: dict = {}
    for sock in last.values():
        by_owner.setdefault((sock.pid, sock.netns), []).append(sock)
    tallies = [_Tally((k.pid, k.netns) for k in d.values()) for d in per_snap]
    out = []
    for (pid, ns), socks in sorted(by_owner.items(), key=lambda kv: -len(kv[1])):
        idle = sorted(x.last_data_recv_ms for x in socks if x.last_data_recv_ms is not None)
        out.append(CloseWaitHolder(
            pid, socks[0].comm, ns, len(socks), sum(1 for x in socks if cw_key(x) in persistent),
            tuple(t[(pid, ns)] for t in tallies),
            len(snaps), idle[-1] if idle else None, idle[len(idle) // 2] if idle else None,
            peers_text(socks), f"held through the whole window ({len(snaps)} snapshots)"))
    return out


def _cw_from_summaries(series) -> list[CloseWaitHolder]:
    rd = reads(series)
    if not rd:
        return []
    last = rd[-1][1]
    tallies = []
    for _i, sm in rd:
        t: _Tally = _Tally()
        for x in sm.by_owner:
            if x.state == "CLOSE_WAIT":
                t[(x.pid, x.netns)] += x.count
        tallies.append(t)
    out = []
    for o in last.by_owner:
        if o.state != "CLOSE_WAIT":
            continue
        counts = tuple(t[(o.pid, o.netns)] for t in tallies)
        if o.held is not None:
            held = min((o.held,) + counts)
            note = ("already there at the previous read of the socket table (the recorder reads "
                    f"it every few samples; {len(rd)} read(s) in the window)")
        elif len(rd) >= 2:
            held = min(counts)
            note = (f"the fewest of the {len(rd)} reads of the socket table in the window (the "
                    "summary of this recording does not say which sockets stayed)")
        else:
            held = None
            note = "not known: one read of the socket table in the window, none before it"
        out.append(CloseWaitHolder(o.pid, o.comm, o.netns, o.count, held, counts, len(rd),
                                   o.oldest_ms, o.median_ms, o.peers, note))
    out.sort(key=lambda h: -h.count)
    return out


# ---- FIN_WAIT2 ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FinWait2:
    """FIN_WAIT2 sockets of one namespace."""

    netns: int | None
    count: int
    owned: int | None  # still held by a process (None: not known)
    peers: str | None


def fin_wait2(snap) -> list[FinWait2]:
    """FIN_WAIT2 sockets per namespace now, the most first."""
    if snap.sockets is not None:
        per: dict = {}
        for k in snap.sockets.sockets:
            if k.state == "FIN_WAIT2":
                per.setdefault(k.netns, []).append(k)
        out = [FinWait2(ns, len(s), sum(1 for k in s if k.pid is not None), peers_text(s))
               for ns, s in per.items()]
    else:
        sm = snap.get("socket_summary")
        if sm is None:
            return []
        owned: _Tally = _Tally()
        for o in sm.by_owner:
            if o.state == "FIN_WAIT2" and o.pid is not None:
                owned[o.netns] += o.count
        old = sm.version < VERSION or sm.owners_truncated
        out = [FinWait2(c.netns, c.count, None if old else owned[c.netns], None)
               for c in sm.by_state if c.state == "FIN_WAIT2"]
    out.sort(key=lambda f: -f.count)
    return out


# ---- ephemeral ports ---------------------------------------------------------------------------

def destinations(snap, netns: int | None = None):
    """From a summary: (low, high, ports in use, destinations) counted in ksight's namespace's
    ip_local_port_range when the table was read; None without a summary that holds them."""
    sm = snap.get("socket_summary")
    if sm is None or sm.version < VERSION:
        return None
    dests = tuple(d for d in sm.destinations if netns is None or d.netns == netns)
    return sm.port_low, sm.port_high, sm.ports_in_use, dests


# ---- the other namespaces' counters ------------------------------------------------------------

_NO_SYSCTLS = "not read inside the namespace when the recorder read its counters"


@dataclass(frozen=True)
class _NsView:
    """collect/netns_counters.NsCounters's shape, from a summary's NsTcpCounters."""

    netns: int
    pid: int | None
    snmp: object | None = None
    netstat: object | None = None
    sockstat: object | None = None
    netdev: object | None = None
    sysctls: object | None = None
    sysctls_why: str | None = None

    def get(self, source: str):
        return getattr(self, source, None) if source in ("snmp", "netstat", "sockstat",
                                                         "netdev") else None


@dataclass(frozen=True)
class _NsTable:
    namespaces: dict
    own: int | None
    from_summary: bool = True

    def get(self, netns):
        return self.namespaces.get(netns)


def summary_ns_table(snap):
    """The other namespaces' counters a snapshot's socket summary holds, shaped as a
    NetnsCounters (own: ksight's namespace, whose counters are the system sources); None when
    the summary holds none."""
    sm = snap.get("socket_summary")
    if sm is None or not sm.counters:
        return None
    return _NsTable({c.netns: _NsView(c.netns, c.pid, netstat=c.netstat, sockstat=c.sockstat,
                                      sysctls=c.sysctls, sysctls_why=c.sysctls_why
                                      or _NO_SYSCTLS if c.sysctls is None else None)
                     for c in sm.counters}, sm.own_netns)


__all__ = ["summarise", "close_wait_keys", "reads", "read_series", "from_summary", "listener_reads",
           "state_count", "close_wait_holders", "close_wait_count", "fin_wait2", "destinations",
           "summary_ns_table", "CloseWaitHolder", "FinWait2", "ListenerRead", "NS_COUNTERS",
           "VERSION", "MAX_OWNERS"]
