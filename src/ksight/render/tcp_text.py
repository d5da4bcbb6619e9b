"""Text of `ksight tcp` (overview) and `ksight tcp --connections`."""

from __future__ import annotations

from ..views.tcp import Connections, Overview
from . import units


def _ns(netns, own: bool = False) -> str:
    if netns is None:
        return "own netns"
    return f"net:[{netns}]" + ("*" if own else "")


def _n(v) -> str:
    return units.number(v)


def _table(header, rows, align) -> list[str]:
    w = [len(h) for h in header]
    for r in rows:
        w = [max(a, len(c)) for a, c in zip(w, r)]

    def line(cells):
        return "  ".join(c.rjust(w[i]) if align[i] == "r" else c.ljust(w[i])
                         for i, c in enumerate(cells)).rstrip()
    return [line(header)] + [line(r) for r in rows]


def render(ov: Overview, out) -> None:
    p = lambda s="": print(s, file=out)  # noqa: E731
    span = (f"over {units.duration(ov.seconds)} ({ov.intervals} interval"
            f"{'' if ov.intervals == 1 else 's'})" if ov.intervals else "one snapshot")
    p(f"TCP and network I/O, {span}; {len(ov.namespaces)} network namespace(s) "
      "(* = ksight's own)")

    p()
    p("Retransmissions: ΔRetransSegs / ΔOutSegs (/proc/net/snmp, per namespace)")
    rows = []
    for n in ov.namespaces:
        r = n.retrans
        kinds = {k.name: k.window for k in r.breakdown}
        rows.append([_ns(n.netns, n.own), units.pct(r.pct, 2),
                     f"{_n(r.retrans_segs)}/{_n(r.out_segs)}",
                     units.pct(r.peak_pct, 2), units.pct(r.since_boot_pct, 3),
                     _n(kinds.get("fast retransmits")), _n(kinds.get("timeouts (RTO)")),
                     _n(kinds.get("tail-loss probes")), _n(kinds.get("SYN retransmits"))])
    for line in _table(["  netns", "window", "retrans/sent", "worst", "since boot", "fast",
                        "RTO", "TLP", "SYN"], [["  " + r[0]] + r[1:] for r in rows],
                       "lrrrrrrrr"):
        p(line)

    c = ov.census
    p()
    if c is None:
        p("Connection states: socket table not collected")
    else:
        counts = "  ".join(f"{s} {c.counts[s]}" for s in
                           ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
                            "TIME_WAIT", "CLOSE_WAIT", "LAST_ACK", "CLOSING", "LISTEN")
                           if c.counts.get(s))
        p(f"Connection states: {c.total} sockets in {c.namespaces} namespace(s)")
        p(f"  {counts or 'none'}")
        rows = [[h.state, _n(h.count), f"{h.comm or '?'}[{h.pid}]" if h.pid is not None
                 else "(no process)", _ns(h.netns)] for h in c.holders if h.state != "LISTEN"]
        if rows:
            for line in _table(["  state", "sockets", "held by", "netns"],
                               [["  " + r[0]] + r[1:] for r in rows[:10]], "lrll"):
                p(line)

    p()
    p("Listeners: accept queue (now / most seen) against backlog; overflows per namespace")
    rows = [[x.socket, f"{_n(x.accept_queue)}/{_n(x.peak_accept_queue)}", _n(x.backlog),
             f"{x.comm or '?'}[{x.pid}]" if x.pid is not None else "-", _ns(x.netns)]
            for x in ov.listeners[:20]]
    if rows:
        for line in _table(["  listener", "queue", "backlog", "process", "netns"],
                           [["  " + r[0]] + r[1:] for r in rows], "lrrll"):
            p(line)
    for n in ov.namespaces:
        t = n.tcp
        p(f"  {_ns(n.netns, n.own)}: ListenOverflows {_n(t.listen_overflows.window)}, "
          f"ListenDrops {_n(t.listen_drops.window)} over the window "
          f"({_n(t.listen_overflows.since_boot)} / {_n(t.listen_drops.since_boot)} since boot)")
        p(f"    SYN cookies sent {_n(t.cookies_sent.window)}, SYN queue drops "
          f"{_n(t.reqq_full_drop.window)}, SYN_RECV {_n(t.syn_recv)}; TIME_WAIT "
          f"{_n(t.time_wait)}, TCPTimeWaitOverflow {_n(t.tw_overflow.window)}")
        sc = n.sysctls
        if sc:
            short = ", ".join(f"{k.rsplit('.', 1)[1]} {' '.join(v.split())}" for k, v in sc.items())
            p(f"    {short}" + (f" (ksight's namespace's values: {n.sysctls_why})"
                                 if n.sysctls_why else ""))

    mem = ov.memory
    p()
    if mem is not None:
        ps = mem.page_size
        p(f"TCP memory: {_n(mem.pages)} pages ({units.size_pages(mem.pages, ps)}), peak "
          f"{_n(mem.peak_pages)}; TCPMemoryPressures {_n(mem.pressures.window)} over the window")
        p(f"  tcp_mem: low {_n(mem.low)} / pressure {_n(mem.pressure)} / high {_n(mem.high)} "
          "pages")
    e = ov.ports
    if e is not None:
        p(f"Ephemeral ports: {_n(e.in_use)} in use of ip_local_port_range "
          f"{e.low}-{e.high} ({_n(e.size)} per destination)")
        for d in e.destinations[:5]:
            p(f"  to {d.remote_addr}:{d.remote_port} ({_ns(d.netns)}): {_n(d.ports_in_use)} "
              f"ports, {_n(d.time_wait)} in TIME_WAIT")

    p()
    p("NIC transmit: drops over the window (peak /s), txqueuelen")
    rows = [[x.interface, _n(x.tx_drop), units.rate(x.tx_drop_peak_per_s), _n(x.tx_packets),
             _n(x.tx_drop_since_boot), _n(x.tx_queue_len), x.operstate or "-",
             _ns(x.netns, x.own)] for x in ov.nics]
    for line in _table(["  iface", "tx drops", "peak", "tx packets", "since boot", "txqueuelen",
                        "state", "netns"], [["  " + r[0]] + r[1:] for r in rows], "lrrrrrll"):
        p(line)

    sn = ov.softnet
    if sn is not None:
        p()
        p(f"Softnet per CPU (netdev_budget {_n(sn.netdev_budget)}, budget_usecs "
          f"{_n(sn.netdev_budget_usecs)}, netdev_max_backlog {_n(sn.netdev_max_backlog)})")
        rows = [[str(x.cpu), _n(x.processed), _n(x.dropped), units.rate(x.dropped_peak_per_s),
                 _n(x.time_squeeze), units.rate(x.squeeze_peak_per_s), _n(x.dropped_since_boot),
                 _n(x.squeeze_since_boot)] for x in sn.cpus]
        for line in _table(["  cpu", "processed", "dropped", "peak", "squeezed", "peak",
                            "dropped (boot)", "squeezed (boot)"],
                           [["  " + r[0]] + r[1:] for r in rows], "rrrrrrrr"):
            p(line)
    for n in ov.notes:
        p(f"note: {n}")
    missing = [m for m in ov.unavailable if m.source.startswith(("sock", "netns", "snmp",
                                                                  "netstat", "softnet", "net"))]
    for m in missing[:5]:
        p(f"unavailable: {m.source}: {m.reason}")


def _limited(c) -> str:
    if c.busy_ms is None or c.rwnd_limited_pct is None:
        return "-"
    return f"{c.rwnd_limited_pct:.1f}/{c.sndbuf_limited_pct:.1f} %"


def render_connections(rep: Connections, out) -> None:
    p = lambda s="": print(s, file=out)  # noqa: E731
    f = {k: v for k, v in rep.filters.items() if v}
    p(f"{len(rep.rows)} of {rep.total} TCP sockets" + (f" ({f})" if f else "")
      + ("" if rep.diag_available else "; sock_diag unavailable: no tcp_info (cwnd, rtt, ...)"))
    rows = []
    for c in rep.rows:
        who = f"{c.comm or '?'}[{c.pid}]" if c.pid is not None else "-"
        rtt = "-" if c.rtt_ms is None else f"{c.rtt_ms:.3g}/{c.rttvar_ms:.3g}"
        rows.append([c.state, c.local, c.remote, _n(c.recv_q), _n(c.send_q)
                     if c.state != "LISTEN" else _n(c.backlog), _n(c.cwnd), _n(c.ssthresh), rtt,
                     "-" if c.rto_ms is None else f"{c.rto_ms:g}",
                     "-" if c.total_retrans is None else f"{c.retrans}/{c.total_retrans}",
                     _n(c.rcv_space), _n(c.busy_ms), _limited(c), who, _ns(c.netns)])
    for line in _table(["State", "Local", "Peer", "Recv-Q", "Send-Q", "cwnd", "ssthresh",
                        "rtt/var ms", "rto ms", "retrans", "rcv_space", "busy ms",
                        "rwnd/sndbuf limited", "process", "netns"],
                       rows, "lllrrrrrrrrrrll"):
        p(line)
    p("Recv-Q/Send-Q: unread / unacknowledged bytes (LISTEN: accept queue / backlog); "
      "retrans: outstanding/total")
    p("busy: ms with data to send over the connection's life; rwnd/sndbuf limited: the share of "
      "it held back by the peer's receive window / the socket's send buffer (tcp_info, 4.10+)")
