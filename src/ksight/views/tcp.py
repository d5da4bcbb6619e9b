"""`ksight tcp`: the TCP and network overview, and per-connection detail (data only).

Everything is computed in model/tcp.py from a Series (per-interval deltas, per-namespace
counters); this module picks and assembles it for the command. Text is render/tcp_text.py.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..collect.plan import Needs
from ..model import tcp as m
from ..model.series import Series

SOURCES = ("snmp", "netstat", "sockstat", "netdev", "netclass", "softnet_stat", "sysctl")


def needs(window: bool = True) -> Needs:
    return Needs(sources=SOURCES, sockets=True, netns_counters=True, window=window)


@dataclass(frozen=True)
class Namespace:
    netns: int | None
    own: bool
    pid: int | None  # the process whose /proc/PID/net/* were read (None: the system files)
    retrans: m.Retransmission
    tcp: m.NsTcp
    # NS_SYSCTLS as they apply in the namespace (model.tcp.ns_sysctl): name -> value as printed
    sysctls: dict[str, str] = field(default_factory=dict)
    # None: the namespace's own values (or ksight's namespace); else why ksight's stand in
    sysctls_why: str | None = None


@dataclass(frozen=True)
class Overview:
    seconds: float
    intervals: int
    taken_at: float | None
    namespaces: tuple[Namespace, ...]  # ksight's own first
    census: m.Census | None
    listeners: tuple[m.Listener, ...]
    memory: m.TcpMemory | None
    ports: m.EphemeralPorts | None
    nics: tuple[m.NicTx, ...]
    softnet: m.Softnet | None
    sysctls: dict[str, str]
    unavailable: tuple  # Missing(source, reason) of the last snapshot
    notes: tuple[str, ...] = ()


SYSCTLS = ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies",
           "net.ipv4.tcp_abort_on_overflow", "net.ipv4.tcp_max_tw_buckets",
           "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_mem",
           "net.ipv4.ip_local_port_range", "net.core.netdev_budget",
           "net.core.netdev_budget_usecs", "net.core.netdev_max_backlog")


# per namespace (the namespace's own value: collect/netns_counters.NS_SYSCTLS), in the overview
NS_SYSCTLS = ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies",
              "net.ipv4.tcp_abort_on_overflow", "net.ipv4.tcp_max_tw_buckets",
              "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout", "net.ipv4.ip_local_port_range")


def _safe(fn, *a):
    try:
        return fn(*a)
    except (AttributeError, KeyError, TypeError):
        return None


def overview(snaps, *, top: int = 10) -> Overview:
    s = Series.of(snaps)
    t = s.last.get("netns_counters")
    spaces = []
    for ns in m.scopes(s):
        c = t.get(ns) if (t is not None and ns is not None) else None
        xs = [m.ns_sysctl(s.last, n, ns) for n in NS_SYSCTLS]
        why = next((x.why for x in xs if not x.own_value and x.why), None)
        spaces.append(Namespace(ns, m.is_own(s, ns), c.pid if c is not None else None,
                                m.retransmission(s, ns), m.ns_tcp(s, ns, s.last.sockets),
                                {x.name: x.text for x in xs if x.text is not None}, why))
    sc = s.last.get("sysctl")
    notes = []
    if s.intervals == 0:
        notes.append("one snapshot: no rates (give an interval, e.g. `ksight tcp 1 5`)")
    if s.breaks:
        notes.append(f"the series was cut at a {s.breaks[-1].kind}: {s.breaks[-1].reason}")
    return Overview(
        seconds=round(s.seconds, 3), intervals=s.intervals, taken_at=s.last.taken_at,
        namespaces=tuple(spaces), census=m.census(s.last.sockets, top=top),
        listeners=tuple(m.listeners(s)), memory=_safe(m.tcp_memory, s),
        ports=m.ephemeral_ports(s.last, top=top), nics=tuple(_safe(m.nic_tx, s) or ()),
        softnet=_safe(m.softnet, s),
        sysctls={n: sc.text(n) for n in SYSCTLS if sc is not None and sc.text(n) is not None},
        unavailable=tuple(s.last.unavailable), notes=tuple(notes))


# ---- per connection ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Connection:
    family: str
    state: str
    local: str
    remote: str
    pid: int | None
    comm: str | None
    netns: int | None
    send_q: int  # bytes not yet acknowledged (LISTEN: 0)
    recv_q: int  # bytes not yet read (LISTEN: accept queue)
    backlog: int | None  # LISTEN: the accept queue's maximum
    cwnd: int | None  # segments
    ssthresh: int | None  # segments (None: still in initial slow start)
    rtt_ms: float | None
    rttvar_ms: float | None
    rto_ms: float | None
    retransmits: int | None  # retransmissions of the segment now outstanding (timer backoff)
    retrans: int | None  # segments retransmitted now outstanding
    total_retrans: int | None  # over the connection's life
    lost: int | None
    unacked: int | None
    snd_mss: int | None
    rcv_space: int | None  # bytes
    delivery_rate: int | None  # bytes/s
    cookie: int | None
    last_data_recv_ms: int | None = None  # ms since data last arrived (tcp_info)
    rcvbuf: int | None = None  # the socket's receive buffer now (sock_diag skmeminfo)
    sndbuf: int | None = None
    # tcp_info (4.10+), over the connection's life: ms with data to send, and of it ms held back
    # by the peer's receive window / by the send buffer (ss -ti: busy, rwnd_limited,
    # sndbuf_limited); the shares are of busy_ms (None where busy is 0 or not known)
    busy_ms: float | None = None
    rwnd_limited_ms: float | None = None
    rwnd_limited_pct: float | None = None
    sndbuf_limited_ms: float | None = None
    sndbuf_limited_pct: float | None = None


@dataclass(frozen=True)
class Connections:
    rows: tuple[Connection, ...]
    total: int  # sockets before the filters
    filters: dict
    diag_available: bool  # tcp_info came from sock_diag (else only /proc/net/tcp columns)
    unavailable: tuple


def _ep(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _ms(us: int | None) -> float | None:
    return None if us is None else us / 1000.0


def _share(part: int | None, busy: int | None) -> float | None:
    return None if part is None or not busy else 100.0 * part / busy


def connections(snap, *, pid: int | None = None, port: int | None = None,
                states: tuple[str, ...] = ()) -> Connections:
    table = snap.sockets
    rows = []
    total = 0
    for k in (table.sockets if table is not None else ()):
        total += 1
        if pid is not None and k.pid != pid:
            continue
        if port is not None and port not in (k.local_port, k.remote_port):
            continue
        st = m.state_of(k)
        if states and st not in states:
            continue
        busy = getattr(k, "busy_time_us", None)
        rwnd = getattr(k, "rwnd_limited_us", None)
        sndl = getattr(k, "sndbuf_limited_us", None)
        ss = k.ssthresh if k.ssthresh is not None and k.ssthresh < 0x7FFFFFFF else None
        rows.append(Connection(
            k.family, st, _ep(k.local_addr, k.local_port), _ep(k.remote_addr, k.remote_port),
            k.pid, k.comm, k.netns, k.tx_queue, k.rx_queue if st != "LISTEN" else (
                k.accept_queue if k.accept_queue is not None else k.rx_queue), k.backlog,
            k.cwnd, ss, _ms(k.rtt_us), _ms(k.rttvar_us), _ms(getattr(k, "rto_us", None)),
            k.retransmits, k.retrans, k.total_retrans, k.lost, k.unacked, k.snd_mss,
            getattr(k, "rcv_space", None), k.delivery_rate, k.cookie,
            getattr(k, "last_data_recv_ms", None), getattr(k, "rcvbuf", None),
            getattr(k, "sndbuf", None), _ms(busy), _ms(rwnd), _share(rwnd, busy), _ms(sndl),
            _share(sndl, busy)))
    order = {s: i for i, s in enumerate(m.STATES)}
    rows.sort(key=lambda c: (order.get(c.state, 99), c.netns or 0, c.local, c.remote))
    return Connections(tuple(rows), total, {"pid": pid, "port": port, "states": list(states)},
                       bool(table is not None and table.diag_available),
                       tuple(snap.unavailable))


__all__ = ["Overview", "Namespace", "Connection", "Connections", "overview", "connections",
           "needs", "SOURCES"]
