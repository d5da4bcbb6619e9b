"""TCP and network I/O, computed from a Series: data only (views and rules read it, render/ prints).

Counters are per network namespace. The system sources snmp/netstat/sockstat are ksight's own
namespace; `netns_counters` (collect/netns_counters.py) holds every namespace a process lives in.
`scopes(series)` lists the namespaces to judge, and `ns_counter(series, c, netns)` is the counter
of one of them as a CounterSeries (per-interval deltas, resets flagged: model/series.py), so a
listener overflowing inside a container is seen, and attributed to its namespace.

What is here:
- retransmission rate: ΔRetransSegs / ΔOutSegs × 100 per interval, over the window and since
  boot, with the TcpExt breakdown (fast retransmits, timeouts, tail-loss probes, SYN retransmits);
- the connection-state census, with the processes and namespaces that hold the sockets;
- listeners: accept queue (rqueue) against backlog (wqueue), and ListenOverflows/ListenDrops;
- SYN cookies and SYN-queue drops; TCP memory in pages against tcp_mem; ephemeral ports in use
  per destination against ip_local_port_range; NIC TX drops and txqueuelen; softnet drops and
  time squeezes per CPU against netdev_budget.
"""

from __future__ import annotations

from collections import Counter as _Tally
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .counters import Counter, net
from .series import CounterSeries, Series

RETRANS_SEGS = net("Tcp", "RetransSegs")
OUT_SEGS = net("Tcp", "OutSegs")
FAST_RETRANS = net("TcpExt", "TCPFastRetrans")
TIMEOUTS = net("TcpExt", "TCPTimeouts")
LOSS_PROBES = net("TcpExt", "TCPLossProbes", since="3.10+")
SYN_RETRANS = net("TcpExt", "TCPSynRetrans", since="3.10+")
SLOW_START_RETRANS = net("TcpExt", "TCPSlowStartRetrans")
LISTEN_OVERFLOWS = net("TcpExt", "ListenOverflows")
LISTEN_DROPS = net("TcpExt", "ListenDrops")
COOKIES_SENT = net("TcpExt", "SyncookiesSent")
COOKIES_RECV = net("TcpExt", "SyncookiesRecv")
COOKIES_FAILED = net("TcpExt", "SyncookiesFailed")
REQQ_FULL_DROP = net("TcpExt", "TCPReqQFullDrop", since="3.9+")
REQQ_FULL_COOKIES = net("TcpExt", "TCPReqQFullDoCookies", since="3.9+")
TW_OVERFLOW = net("TcpExt", "TCPTimeWaitOverflow")
MEMORY_PRESSURES = net("TcpExt", "TCPMemoryPressures")
ABORT_ON_MEMORY = net("TcpExt", "TCPAbortOnMemory")
PRUNE_CALLED = net("TcpExt", "PruneCalled")
RCVQ_DROP = net("TcpExt", "TCPRcvQDrop", since="5.4+")

# the TcpExt breakdown of retransmissions, in the order people read it
BREAKDOWN: tuple[tuple[str, Counter], ...] = (
    ("fast retransmits", FAST_RETRANS),
    ("timeouts (RTO)", TIMEOUTS),
    ("tail-loss probes", LOSS_PROBES),
    ("SYN retransmits", SYN_RETRANS),
    ("slow-start retransmits", SLOW_START_RETRANS),
)

STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
          "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")


def state_of(sock) -> str:
    """The state as ss prints it: request sockets (NEW_SYN_RECV) are SYN_RECV."""
    return "SYN_RECV" if sock.state == "NEW_SYN_RECV" else sock.state


def netns_label(netns: int | None) -> str | None:
    return None if netns is None else f"net:[{netns}]"


# ---- counters per network namespace ------------------------------------------------------------

def _ns_table(snap):
    t = snap.get("netns_counters")
    if t is None and snap.sockets is None and snap.get("socket_summary") is not None:
        # a recording: the other namespaces' counters its socket summary holds
        from .sockets import summary_ns_table

        return summary_ns_table(snap)
    return t


def ns_table(snap):
    """The per-namespace counters of a snapshot (collect/netns_counters.NetnsCounters, or on a
    recording the ones its socket summary holds, in the same shape); None without them."""
    return _ns_table(snap)


def scopes(series: Series) -> list[int | None]:
    """The namespaces to judge counters in: every namespace the last snapshot has counters for
    (ksight's own first), or [None] (ksight's own namespace through the system sources) when
    per-namespace counters were not collected."""
    t = _ns_table(series.last)
    if t is None or not t.namespaces:
        return [None]
    own = t.own
    spaces = [ns for ns, c in t.namespaces.items()
              if c.snmp is not None or c.netstat is not None or c.sockstat is not None]
    if not spaces or own is not None and own not in t.namespaces:
        # no namespace's files (a capture made before they were collected), or our namespace
        # has no process in the table: the system sources
        spaces.append(None)
    return sorted(spaces, key=lambda ns: (ns is not None and ns != own, ns or 0))


def is_own(series: Series, netns: int | None) -> bool:
    t = _ns_table(series.last)
    return netns is None or (t is not None and t.own == netns)


def ns_source(snap, source: str, netns: int | None):
    """The parsed snmp/netstat/sockstat of one namespace in a snapshot (None: the system one)."""
    if netns is not None:
        t = _ns_table(snap)
        c = t.get(netns) if t is not None else None
        if c is not None and c.get(source) is not None:
            return c.get(source)
        if t is None or t.own != netns:
            return None
    return snap.get(source)


@dataclass(frozen=True)
class NsSysctl:
    """One sysctl as it applies in a network namespace."""

    name: str
    text: str | None  # as the kernel printed it (None: not read)
    path: str  # /proc/sys/... (read inside the namespace, for another namespace's own value)
    own_value: bool  # True: the namespace's own value (or ksight's namespace); False: ksight's
    # namespace's value stands in for it (not read there: `why`)
    why: str | None = None
    pid: int | None = None  # a process in the namespace (to enter it: nsenter -t PID -n)

    @property
    def value(self) -> int | None:
        """A single integer, or None (not read, or several values)."""
        t = (self.text or "").split()
        try:
            return int(t[0]) if len(t) == 1 else None
        except ValueError:
            return None

    @property
    def ints(self) -> tuple[int, ...] | None:
        try:
            return tuple(int(x) for x in self.text.split()) if self.text else None
        except ValueError:
            return None

    def note(self, netns: int | None) -> str | None:
        """Where the value comes from, for evidence; None for ksight's own namespace."""
        if netns is None or self.why is None and self.pid is None:
            return None
        if self.own_value:
            return f"net:[{netns}]'s own value, read inside it"
        return f"ksight's namespace's value: net:[{netns}]'s own was not read ({self.why})"

    def sysctl_command(self, netns: int | None, value) -> str | None:
        """How to set it in that namespace (None: ksight's own, plain sysctl -w)."""
        if netns is None or self.pid is None:
            return None
        return f"nsenter -t {self.pid} -n sysctl -w {self.name}={value}"


def ns_sysctl(snap, name: str, netns: int | None) -> NsSysctl:
    """Sysctl `name` as it applies in namespace `netns` of a snapshot: the value read inside it
    (collect/netns_counters.py NS_SYSCTLS); for ksight's own namespace (or None) the system
    sysctl source; else, when the namespace's values were not read (a capture made before, a
    namespace that could not be entered, a sysctl not per namespace), the system value, with why."""
    path = "/proc/sys/" + name.replace(".", "/")
    sc = snap.get("sysctl")
    system = sc.text(name) if sc is not None else None
    t = _ns_table(snap)
    if netns is None or t is not None and t.own == netns:
        return NsSysctl(name, system, path, True)
    if t is None:
        return NsSysctl(name, system, path, False, "the namespaces' own values were not collected")
    c = t.get(netns)
    if c is None:
        return NsSysctl(name, system, path, False, "no process of it was read")
    nss = getattr(c, "sysctls", None)
    if nss is None:
        return NsSysctl(name, system, path, False, getattr(c, "sysctls_why", None) or "not read",
                        c.pid)
    text = nss.text(name)
    if text is None:
        why = nss.missing.get(name) or "not read per namespace by ksight"
        return NsSysctl(name, system, path, False, why, c.pid)
    return NsSysctl(name, text, path, True, None, c.pid)


def ns_counter(series: Series, c: Counter, netns: int | None = None) -> CounterSeries:
    """Counter `c` of one namespace across the series (the system counter for None or our own)."""
    if netns is None or is_own(series, netns) and _ns_table(series.last).get(netns) is None:
        return series.counter(c)
    if getattr(_ns_table(series.last), "from_summary", False):
        # a recording reads the other namespaces' counters with the socket table, every few
        # samples, and carries them between: rates between the samples that read them
        from .sockets import read_series

        rs = read_series(series)
        if rs is None:  # one read in the window: no delta can be told (not "0")
            return series.derived_counter(f"{c.name}@net:[{netns}]", lambda s: None)
        return rs.derived_counter(f"{c.name}@net:[{netns}]",
                                  lambda s: c.read(ns_source(s, c.source, netns)))
    return series.derived_counter(f"{c.name}@net:[{netns}]",
                                  lambda s: c.read(ns_source(s, c.source, netns)))


def untold(series: Series, netns: int | None) -> str | None:
    """Why the counters of namespace `netns` cannot be judged over this window, or None: on a
    recording they are read with the socket table every few samples, and a window holding a
    single read tells no delta."""
    if netns is None or is_own(series, netns) or not getattr(_ns_table(series.last),
                                                             "from_summary", False):
        return None
    from .sockets import read_series

    if read_series(series) is not None:
        return None
    return (f"net:[{netns}]'s counters: a recording reads them with the socket table, every few "
            f"samples, and this window ({series.seconds:.3g} s) holds one read; widen it (--interval "
            "or --since) to hold two")


def since_boot(series: Series, c: Counter, netns: int | None = None) -> int | None:
    return c.read(ns_source(series.last, c.source, netns))


# ---- retransmissions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RetransKind:
    """One kind of TCP retransmission and its counter."""

    name: str  # "fast retransmits"
    counter: str  # "TcpExt.TCPFastRetrans"
    window: int | None  # moved over the window
    since_boot: int | None


@dataclass(frozen=True)
class Retransmission:
    """Retransmitted segments per interval, in one network namespace."""

    netns: int | None
    pct_per_interval: tuple[float | None, ...]  # ΔRetransSegs / ΔOutSegs × 100 (None: no segments)
    out_segs_per_interval: tuple[int | None, ...]
    retrans_per_interval: tuple[int | None, ...]
    out_segs: int | None  # over the window
    retrans_segs: int | None
    pct: float | None  # over the window
    peak_pct: float | None  # the worst interval
    peak_interval: int | None
    peak_out_segs: int | None  # segments sent in the worst interval
    since_boot_pct: float | None
    out_segs_since_boot: int | None
    retrans_segs_since_boot: int | None
    breakdown: tuple[RetransKind, ...]


def pct(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return part / whole * 100.0


def retransmission(series: Series, netns: int | None = None,
                   min_segments: int = 0) -> Retransmission:
    """The rate per interval; the peak only among intervals that sent at least min_segments."""
    r = ns_counter(series, RETRANS_SEGS, netns)
    o = ns_counter(series, OUT_SEGS, netns)
    per = tuple(None if dr is None or not do else pct(dr, do) for dr, do in zip(r.deltas, o.deltas))
    peak, at, at_out = None, None, None
    for i, (p, do) in enumerate(zip(per, o.deltas)):
        if p is not None and do is not None and do >= min_segments and (peak is None or p > peak):
            peak, at, at_out = p, i, int(do)
    kinds = tuple(RetransKind(name, c.name, _int(ns_counter(series, c, netns).total),
                              since_boot(series, c, netns)) for name, c in BREAKDOWN)
    rb, ob = since_boot(series, RETRANS_SEGS, netns), since_boot(series, OUT_SEGS, netns)
    return Retransmission(
        netns, per, tuple(_int(d) for d in o.deltas), tuple(_int(d) for d in r.deltas),
        _int(o.total), _int(r.total), pct(r.total, o.total), peak, at, at_out,
        pct(rb, ob), ob, rb, kinds)


def _int(v) -> int | None:
    return None if v is None else int(v)


# ---- connection states -------------------------------------------------------------------------

@dataclass(frozen=True)
class Holder:
    """Sockets of one state held by one process (pid None: no owner found, e.g. TIME_WAIT)."""

    state: str
    pid: int | None
    comm: str | None
    netns: int | None
    count: int


@dataclass(frozen=True)
class Census:
    """TCP sockets by state: every namespace, each namespace, and who holds most."""

    counts: dict[str, int]  # state -> sockets (every namespace)
    by_netns: dict[int | None, dict[str, int]]
    holders: tuple[Holder, ...]  # most sockets first
    total: int
    namespaces: int


def census(table, top: int = 20) -> Census | None:
    if table is None:
        return None
    counts: _Tally = _Tally()
    per_ns: dict = {}
    hold: _Tally = _Tally()
    comms: dict = {}
    for s in table.sockets:
        st = state_of(s)
        counts[st] += 1
        per_ns.setdefault(s.netns, _Tally())[st] += 1
        hold[(st, s.pid, s.netns)] += 1
        if s.pid is not None:
            comms[s.pid] = s.comm
    holders = tuple(Holder(st, pid, comms.get(pid), ns, n)
                    for (st, pid, ns), n in hold.most_common(top))
    return Census(dict(counts), {k: dict(v) for k, v in per_ns.items()}, holders,
                  sum(counts.values()), len(per_ns))


# ---- listeners ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listener:
    """One listening socket and its queue."""

    family: str
    addr: str
    port: int
    netns: int | None
    pid: int | None
    comm: str | None
    accept_queue: int | None  # now (sock_diag rqueue; /proc/net/tcp rx_queue)
    backlog: int | None  # the accept queue's maximum (sock_diag wqueue): min(listen(), somaxconn)
    peak_accept_queue: int | None  # the most seen in any snapshot of the window
    full_snapshots: int  # snapshots where the queue was above its backlog (full)
    syn_recv: int | None = None  # SYN_RECV requests to it now (None: not known)
    reads: int = 1  # reads of the socket table in the window (a recording reads it every few samples)

    @property
    def socket(self) -> str:
        return f"[{self.addr}]:{self.port}" if ":" in self.addr else f"{self.addr}:{self.port}"


def listeners(series: Series) -> list[Listener]:
    """Every LISTEN socket of the last read of the socket table, with its accept queue's peak over
    the window: the snapshots' tables, or on a recording the socket summaries they hold
    (model/sockets.py)."""
    from .sockets import listener_reads

    per_read = listener_reads(series)
    if not per_read:
        return []
    peaks: dict = {}
    for listening in per_read:
        for x in listening:
            k = (x.netns, x.family, x.addr, x.port, x.inode)
            p, full = peaks.get(k, (None, 0))
            if x.queue is not None and (p is None or x.queue > p):
                p = x.queue
            if x.queue is not None and x.backlog is not None and x.queue > x.backlog:
                full += 1
            peaks[k] = (p, full)
    out = []
    for x in per_read[-1]:
        p, full = peaks.get((x.netns, x.family, x.addr, x.port, x.inode), (None, 0))
        out.append(Listener(x.family, x.addr, x.port, x.netns, x.pid, x.comm, x.queue, x.backlog,
                            p, full, x.syn_recv, len(per_read)))
    out.sort(key=lambda x: (-(x.peak_accept_queue or 0), x.netns or 0, x.port))
    return out


# ---- counters of one namespace over the window -------------------------------------------------

@dataclass(frozen=True)
class Moved:
    """A counter that moved over the window."""

    counter: str  # "TcpExt.ListenOverflows"
    window: int | None  # moved over the window (None: absent or reset)
    peak_per_s: float | None
    since_boot: int | None


def moved(series: Series, c: Counter, netns: int | None = None) -> Moved:
    cs = ns_counter(series, c, netns)
    return Moved(c.name, _int(cs.total), cs.peak_rate, since_boot(series, c, netns))


def moved_everywhere(series: Series, c: Counter) -> Moved:
    """A per-namespace MIB counter summed over every namespace with counters: for events of a
    machine-wide resource (tcp_mem is global; TCPMemoryPressures is counted in the namespace of
    the socket that hit it). The peak rate is the largest of one namespace's."""
    parts = [moved(series, c, ns) for ns in scopes(series)]
    wins = [p.window for p in parts if p.window is not None]
    boots = [p.since_boot for p in parts if p.since_boot is not None]
    peaks = [p.peak_per_s for p in parts if p.peak_per_s is not None]
    return Moved(c.name, sum(wins) if wins else None, max(peaks) if peaks else None,
                 sum(boots) if boots else None)


@dataclass(frozen=True)
class NsTcp:
    """The listen and SYN counters of one namespace."""

    netns: int | None
    own: bool
    listen_overflows: Moved
    listen_drops: Moved
    cookies_sent: Moved
    cookies_recv: Moved
    cookies_failed: Moved
    reqq_full_drop: Moved
    reqq_full_cookies: Moved
    tw_overflow: Moved
    syn_recv: int | None  # SYN_RECV sockets now (request sockets)
    time_wait: int | None
    orphans: int | None  # sockstat TCP orphan


def ns_tcp(series: Series, netns: int | None, table=None) -> NsTcp:
    """table: the socket table the SYN_RECV and TIME_WAIT sockets are counted in; None: the last
    snapshot's socket summary when it holds one (a recording), else not counted."""
    st = ns_source(series.last, "sockstat", netns)
    if table is None:
        from .sockets import state_count

        syn, tw = state_count(series.last, "SYN_RECV", netns), state_count(series.last, "TIME_WAIT", netns)
    else:
        mine = [s for s in table.sockets if netns is None or s.netns == netns]
        syn = sum(1 for s in mine if state_of(s) == "SYN_RECV")
        tw = sum(1 for s in mine if s.state == "TIME_WAIT")
    return NsTcp(
        netns, is_own(series, netns),
        moved(series, LISTEN_OVERFLOWS, netns), moved(series, LISTEN_DROPS, netns),
        moved(series, COOKIES_SENT, netns), moved(series, COOKIES_RECV, netns),
        moved(series, COOKIES_FAILED, netns), moved(series, REQQ_FULL_DROP, netns),
        moved(series, REQQ_FULL_COOKIES, netns), moved(series, TW_OVERFLOW, netns),
        syn, tw, st.get("TCP", "orphan") if st is not None else None)


# ---- TCP memory --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TcpMemory:
    """TCP memory against its limits."""

    pages: int | None  # sockstat TCP mem now (pages, machine-wide)
    peak_pages: int | None
    low: int | None  # net.ipv4.tcp_mem: below, no pressure
    pressure: int | None  # above, the kernel moderates buffers until below low again
    high: int | None  # above, new allocations fail (drops, aborts)
    page_size: int
    pressures: Moved  # TcpExt.TCPMemoryPressures, summed over the namespaces
    aborts_on_memory: Moved  # TcpExt.TCPAbortOnMemory, summed over the namespaces


def tcp_memory(series: Series) -> TcpMemory:
    g = series.gauge("tcp mem", lambda s: s.get("sockstat").get("TCP", "mem"))
    sc = series.last.get("sysctl")
    mem = sc.ints("net.ipv4.tcp_mem") if sc is not None else None
    lo, pr, hi = (mem + (None, None, None))[:3] if mem else (None, None, None)
    peak = g.peak
    return TcpMemory(_int(g.last), None if peak is None else int(peak[0]), lo, pr, hi,
                     series.last.host.page_size, moved_everywhere(series, MEMORY_PRESSURES),
                     moved_everywhere(series, ABORT_ON_MEMORY))


# ---- ephemeral ports ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Destination:
    """Local ports held towards one destination (address and port)."""

    netns: int | None
    remote_addr: str
    remote_port: int
    ports_in_use: int  # local ports in ip_local_port_range held towards this destination
    time_wait: int


@dataclass(frozen=True)
class EphemeralPorts:
    """The ephemeral port range and its use."""

    low: int | None
    high: int | None
    size: int | None  # ports in the range
    in_use: int  # sockets with a local port in the range (not LISTEN)
    destinations: tuple[Destination, ...]  # busiest first


def ephemeral_ports(snap, top: int = 10, netns: int | None = None) -> EphemeralPorts | None:
    """Local ports in ip_local_port_range held per destination; with `netns`, only the sockets of
    that namespace, against that namespace's own range (ns_sysctl)."""
    table = snap.sockets
    if table is None:
        from .sockets import destinations

        got = destinations(snap, netns)  # a recording: what its socket summary counted
        if got is None:
            return None
        lo, hi, used, dests = got
        return EphemeralPorts(lo, hi, None if lo is None else hi - lo + 1, used or 0,
                              tuple(Destination(d.netns, d.remote_addr, d.remote_port,
                                                d.ports_in_use, d.time_wait) for d in dests[:top]))
    if netns is not None:
        rng = ns_sysctl(snap, "net.ipv4.ip_local_port_range", netns).ints
    else:
        sc = snap.get("sysctl")
        rng = sc.ints("net.ipv4.ip_local_port_range") if sc is not None else None
    lo, hi = (rng[0], rng[1]) if rng and len(rng) >= 2 else (None, None)
    used, dests = per_destination(table.sockets, lo, hi, top, netns)
    return EphemeralPorts(lo, hi, None if lo is None else hi - lo + 1, used,
                          tuple(Destination(*d) for d in dests))


def per_destination(socks, lo: int | None, hi: int | None, top: int, netns: int | None = None):
    """(connections with a local port in lo..hi (every port when lo is None), the `top`
    destinations holding most: (netns, remote addr, remote port, ports, of them TIME_WAIT))."""
    per: _Tally = _Tally()
    tw: _Tally = _Tally()
    used = 0
    for s in socks:
        if s.state == "LISTEN" or not s.remote_port or netns is not None and s.netns != netns:
            continue
        if lo is not None and not lo <= s.local_port <= hi:
            continue
        used += 1
        k = (s.netns, s.remote_addr, s.remote_port)
        per[k] += 1
        if s.state == "TIME_WAIT":
            tw[k] += 1
    return used, [(ns, a, p, n, tw[(ns, a, p)]) for (ns, a, p), n in per.most_common(top)]


# ---- NIC transmit drops ------------------------------------------------------------------------

@dataclass(frozen=True)
class NicTx:
    """Transmit drops and packets of one interface over the window."""

    interface: str
    tx_drop: int | None  # over the window
    tx_drop_peak_per_s: float | None
    tx_packets: int | None
    tx_drop_since_boot: int | None
    tx_queue_len: int | None  # /sys/class/net/IF/tx_queue_len (txqueuelen; own namespace only)
    operstate: str | None
    netns: int | None = None  # the namespace the interface is in (None: ksight's, unnamed)
    own: bool = True
    pid: int | None = None  # a process in that namespace (to enter it: nsenter -t PID -n)
    drops: CounterSeries | None = None  # per interval


def nic_tx(series: Series) -> list[NicTx]:
    """TX drops of every interface of every namespace: /proc/net/dev of ksight's own, and
    /proc/PID/net/dev of the others (a veth inside a container is only there)."""
    nc = series.last.get("netclass")
    t = _ns_table(series.last)
    out = []
    for ns in scopes(series):
        nd = ns_source(series.last, "netdev", ns)
        if nd is None:
            continue
        own = is_own(series, ns)
        pid = None
        if t is not None and ns is not None and t.get(ns) is not None:
            pid = t.get(ns).pid
        for name in sorted(nd.interfaces):
            def col(field, name=name, ns=ns):
                return series.derived_counter(
                    f"{field} {name}@net:[{ns}]",
                    lambda s: getattr(ns_source(s, "netdev", ns).interfaces[name], field))
            d, p = col("tx_drop"), col("tx_packets")
            ifc = nc.interfaces.get(name) if nc is not None and own else None
            out.append(NicTx(name, _int(d.total), d.peak_rate, _int(p.total),
                             nd.interfaces[name].tx_drop,
                             ifc.tx_queue_len if ifc is not None else None,
                             ifc.operstate if ifc is not None else None, ns, own, pid, d))
    return out


# ---- softnet -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SoftnetCpu:
    """softnet_stat of one CPU over the window."""

    cpu: int
    processed: int | None  # over the window
    dropped: int | None  # backlog full (netdev_max_backlog)
    time_squeeze: int | None  # NET_RX ran out of budget or time with work left
    dropped_peak_per_s: float | None
    squeeze_peak_per_s: float | None
    dropped_since_boot: int | None
    squeeze_since_boot: int | None


@dataclass(frozen=True)
class Softnet:
    """softnet_stat of every CPU, with the budget sysctls."""

    cpus: tuple[SoftnetCpu, ...]
    netdev_budget: int | None
    netdev_budget_usecs: int | None
    netdev_max_backlog: int | None


def _softnet_row(snap, cpu: int):
    st = snap.get("softnet_stat")
    if st is None:
        return None
    for c in st.cpus:
        if c.cpu == cpu:
            return c
    return None


def softnet(series: Series) -> Softnet | None:
    st = series.last.get("softnet_stat")
    if st is None:
        return None
    cpus = []
    for row in st.cpus:
        n = row.cpu

        def col(name, n=n):
            return series.derived_counter(f"softnet cpu{n} {name}",
                                          lambda s: getattr(_softnet_row(s, n), name), per_cpu=True)
        pr, dr, sq = col("processed"), col("dropped"), col("time_squeeze")
        cpus.append(SoftnetCpu(n, _int(pr.total), _int(dr.total), _int(sq.total), dr.peak_rate,
                               sq.peak_rate, row.dropped, row.time_squeeze))
    sc = series.last.get("sysctl")
    get = (lambda n: sc.int(n)) if sc is not None else (lambda n: None)
    return Softnet(tuple(cpus), get("net.core.netdev_budget"), get("net.core.netdev_budget_usecs"),
                   get("net.core.netdev_max_backlog"))


__all__ = ["Retransmission", "RetransKind", "Census", "Holder", "Listener", "NsTcp", "Moved",
           "TcpMemory", "EphemeralPorts", "Destination", "NicTx", "Softnet", "SoftnetCpu",
           "retransmission", "census", "listeners", "ns_tcp", "tcp_memory", "ephemeral_ports",
           "nic_tx", "softnet", "scopes", "ns_counter", "ns_source", "state_of", "netns_label",
           "pct", "moved", "untold", "BREAKDOWN", "STATES"]
