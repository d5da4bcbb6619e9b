"""tcp.listen-overflow and tcp.syn-flood: connections lost before the application sees them."""

from __future__ import annotations

from ....model import tcp as m
from ...finding import Action
from ...rule import Context, Rule, Threshold
from .common import (ns_file, ns_subject, ns_sysctl_ev, ns_why, socket_facts, tcp_rule, toward,
                     where)


def _fill(lst: m.Listener) -> float:
    if lst.backlog in (None, 0) or lst.peak_accept_queue is None:
        return 0.0
    return lst.peak_accept_queue / lst.backlog


@tcp_rule("tcp.listen-overflow", title="A listener's accept queue overflows",
          needs=("netstat",), counters=(m.LISTEN_OVERFLOWS, m.LISTEN_DROPS), sockets=True,
          socket_owners=("LISTEN",),
          uses=("sysctl",),
          thresholds={
              "warn_overflows": Threshold(1, "ListenOverflows over the window, in one namespace",
                                          "each one is a completed handshake the kernel threw "
                                          "away: the client retries after a second or more"),
              "critical_per_s": Threshold(10, "ListenOverflows/s, in an interval",
                                          "clients are being turned away continuously"),
          })
def listen_overflow(ctx: Context, r: Rule):
    """TcpExt ListenOverflows (net/ipv4/tcp_ipv4.c tcp_v4_syn_recv_sock: the accept queue is
    full when the handshake completes; the ACK is dropped, or answered with RST under
    tcp_abort_on_overflow) and ListenDrops (every drop at a listener, overflows included), per
    network namespace. The listener is the one of that namespace whose accept queue (sock_diag
    idiag_rqueue, /proc/net/tcp rx_queue) reached its backlog (idiag_wqueue: min(listen()
    backlog, net.core.somaxconn)) during the window; else the fullest. somaxconn and
    tcp_abort_on_overflow are the namespace's own (read inside it), not ksight's."""
    s = ctx.series
    out, untold = [], []
    src = socket_facts(ctx)
    all_listeners = m.listeners(s)
    for ns in m.scopes(s):
        if m.untold(s, ns):
            untold.append(m.untold(s, ns))
            continue
        somax_x = m.ns_sysctl(s.last, "net.core.somaxconn", ns)
        abort_x = m.ns_sysctl(s.last, "net.ipv4.tcp_abort_on_overflow", ns)
        somax, abort = somax_x.value, abort_x.value
        ov = m.ns_counter(s, m.LISTEN_OVERFLOWS, ns)
        dr = m.ns_counter(s, m.LISTEN_DROPS, ns)
        if (ov.total or 0) < r.t("warn_overflows"):
            continue
        own = m.is_own(s, ns)
        mine = [x for x in all_listeners if ns is None or x.netns == ns]
        full = [x for x in mine if x.backlog is not None and x.peak_accept_queue is not None
                and x.peak_accept_queue >= x.backlog]
        cands = sorted(full or mine, key=_fill, reverse=True)
        netstat = ns_file("/proc/net/netstat", ns, s)
        peak = ov.peak
        sev = "critical" if peak is not None and peak.rate >= r.t("critical_per_s") else "warning"
        targets = cands[:3] if full else cands[:1]
        if not targets:
            targets = [None]
        for lst in targets:
            note = ctx.peak_note(peak, ov.mean_rate)
            if src == "socket_summary" and not own:
                note += ("; a recording reads this namespace's counters with the socket table, "
                         "every few samples: counted between those reads")
            ev = [ctx.ev("ListenOverflows", int(ov.total), "over the window", netstat,
                         threshold=r.t("warn_overflows"), note=note),
                  ctx.ev("ListenDrops", None if dr.total is None else int(dr.total),
                         "over the window", netstat,
                         note="drops at listeners, overflows included")]
            subject = ns_subject(ns)
            if lst is not None:
                seen = ("the most seen in the window" if src == "sock_diag" else
                        f"the most seen in the {lst.reads} read(s) of the socket table in the "
                        "window")
                ev.append(ctx.ev("accept queue", lst.peak_accept_queue, "connections",
                                 src, threshold=lst.backlog,
                                 note=(f"{seen} (now {lst.accept_queue}); "
                                       f"backlog {lst.backlog} = min(listen() backlog, somaxconn)"
                                       if lst.backlog is not None else "backlog not known "
                                       "(sock_diag unavailable)")))
                subject = ns_subject(ns, socket=lst.socket, pid=lst.pid, comm=lst.comm)
            if somax is not None:
                ev.append(ns_sysctl_ev(ctx, somax_x, ns,
                                       note="caps every listen() backlog (per namespace)"))
            if abort is not None:
                ev.append(ns_sysctl_ev(ctx, abort_x, ns))
            who = (f"{lst.comm or '?'}[{lst.pid}]" if lst is not None and lst.pid is not None
                   else "the process")
            backlog = lst.backlog if lst is not None and lst.backlog else None
            want = max(4096, 2 * backlog) if backlog else 4096
            acts = [
                Action.code(f"raise the backlog {who} passes to listen() (to {want} or more) and "
                            f"accept() faster: more acceptor threads, or an event loop that "
                            f"drains accept() until EAGAIN",
                            why="the accept queue holds handshakes completed but not yet "
                                "accepted; it overflows when the application falls behind"),
            ]
            if somax is not None:
                acts.append(Action.sysctl("net.core.somaxconn", somax, toward(somax, want),
                                          why=ns_why(somax_x, ns,
                                                     "listen() backlogs are capped at somaxconn; "
                                                     "raising it alone changes nothing until the "
                                                     "application asks for more (and restarts)",
                                                     toward(somax, want))))
            acts.append(Action.command(
                f"ss -ltn{'p' if lst is not None else ''}"
                + (f" 'sport = :{lst.port}'" if lst is not None else "")
                + "  # Recv-Q: accept queue now, Send-Q: its backlog"))
            expl = (f"{int(ov.total)} connections completed their handshake but were dropped "
                    f"because the accept queue was full {where(ns, own)}"
                    + (f", at {lst.socket}" if lst is not None else "")
                    + ". Clients see a connect that hangs and retries (SYN-ACK/ACK retransmits, "
                    "1 s, 3 s, ...). tcp_abort_on_overflow=1 would answer them with a reset "
                    "instead (a fast error rather than a slow retry); it hides nothing and fixes "
                    "nothing: leave it 0 unless clients must fail fast.")
            out.append(r.finding(sev, ev, expl, acts, subject=subject))
    if not out and untold:
        raise ctx.cannot_look("; ".join(untold))
    return out or None


@tcp_rule("tcp.syn-flood", title="SYN queue full: SYN cookies sent or SYNs dropped",
          needs=("netstat",), counters=(m.COOKIES_SENT,), uses=("sysctl",), sockets=True,
          socket_owners=("LISTEN",),
          thresholds={
              "warn_per_s": Threshold(10, "SYN cookies sent or SYNs dropped per second, in an "
                                      "interval",
                                      "the SYN queue of a listener is full: a flood, or "
                                      "a listener too slow for its connection rate"),
              "critical_drops_per_s": Threshold(100, "SYNs dropped per second, in an interval",
                                                "legitimate clients are being refused"),
          })
def syn_flood(ctx: Context, r: Rule):
    """TcpExt SyncookiesSent (the SYN queue was full: a cookie answered instead of a queued
    request), TCPReqQFullDrop (full and no cookies: the SYN was dropped), TCPReqQFullDoCookies,
    per network namespace; SYN_RECV sockets against net.ipv4.tcp_max_syn_backlog."""
    s = ctx.series
    out, untold = [], []
    src = socket_facts(ctx)
    for ns in m.scopes(s):
        if m.untold(s, ns):
            untold.append(m.untold(s, ns))
            continue
        maxsyn_x = m.ns_sysctl(s.last, "net.ipv4.tcp_max_syn_backlog", ns)
        cookies_x = m.ns_sysctl(s.last, "net.ipv4.tcp_syncookies", ns)
        maxsyn, cookies = maxsyn_x.value, cookies_x.value
        sent = m.ns_counter(s, m.COOKIES_SENT, ns)
        drop = m.ns_counter(s, m.REQQ_FULL_DROP, ns)
        ps, pd = sent.peak_rate or 0.0, drop.peak_rate or 0.0
        if max(ps, pd) < r.t("warn_per_s"):
            continue
        own = m.is_own(s, ns)
        nt = m.ns_tcp(s, ns, s.last.sockets)
        netstat = ns_file("/proc/net/netstat", ns, s)
        lst, queued = _syn_listener(s, ns)
        ev = [ctx.ev("SyncookiesSent", ps, "/s", netstat, threshold=r.t("warn_per_s"),
                     note=ctx.peak_note(sent.peak, sent.mean_rate)),
              ctx.ev("TCPReqQFullDrop", pd if drop.present else None, "/s", netstat,
                     note=ctx.peak_note(drop.peak, drop.mean_rate)),
              ctx.ev("SyncookiesRecv", nt.cookies_recv.window, "over the window", netstat,
                     note="valid cookies came back: real clients completed the handshake"),
              ctx.ev("SyncookiesFailed", nt.cookies_failed.window, "over the window", netstat),
              ctx.ev("SYN_RECV sockets", nt.syn_recv, "now", src, threshold=maxsyn,
                     note=(f"against tcp_max_syn_backlog ({maxsyn_x.note(ns)})"
                           if maxsyn_x.note(ns) else None))]
        if lst is not None:
            ev.append(ctx.ev(f"SYN queue of {lst.socket}", queued, "requests", src,
                             threshold=lst.backlog,
                             note=("half-open requests to this listener; the kernel calls its "
                                   "SYN queue full past its backlog (min(listen() backlog, "
                                   "somaxconn))" if lst.backlog is not None else
                                   "half-open requests to this listener")))
        if maxsyn is not None:
            ev.append(ns_sysctl_ev(ctx, maxsyn_x, ns))
        if cookies is not None:
            ev.append(ns_sysctl_ev(ctx, cookies_x, ns))
        acts = []
        if lst is not None:
            who = f"{lst.comm or '?'}[{lst.pid}]" if lst.pid is not None else "the process"
            acts.append(Action.code(f"raise the backlog {who} passes to listen() on {lst.socket} "
                                    "(and net.core.somaxconn): it bounds the SYN queue too",
                                    why="with SYN cookies on, the queue is full past the listen() "
                                        "backlog whatever tcp_max_syn_backlog says"))
        if maxsyn is not None:
            acts.append(Action.sysctl("net.ipv4.tcp_max_syn_backlog", maxsyn, toward(maxsyn, 8192),
                                      why=ns_why(maxsyn_x, ns,
                                                 "a longer SYN queue absorbs bursts of new "
                                                 "connections; the listen() backlog (and "
                                                 "somaxconn) also bounds it",
                                                 toward(maxsyn, 8192))))
        if cookies is not None and cookies == 0:
            acts.append(Action.sysctl("net.ipv4.tcp_syncookies", cookies, 1,
                                      why=ns_why(cookies_x, ns,
                                                 "answer with SYN cookies when the queue is full "
                                                 "instead of dropping; costs TCP options (window "
                                                 "scaling, SACK) only for those connections", 1)))
        acts.append(Action.command("ss -tn state syn-recv | awk '{print $4}' | sort | uniq -c | "
                                   "sort -rn | head  # who sends the SYNs"))
        sev = "critical" if pd >= r.t("critical_drops_per_s") else "warning"
        out.append(r.finding(
            sev, ev,
            f"The SYN queue of a listener {where(ns, own)} is full: the kernel answers new "
            f"connections with SYN cookies ({ps:.0f}/s) or drops them ({pd:.0f}/s). Either a SYN "
            "flood (many SYNs, few valid cookies coming back) or more connection attempts than "
            "the listener's queues hold.",
            acts, subject=(ns_subject(ns, socket=lst.socket, pid=lst.pid, comm=lst.comm)
                           if lst is not None else ns_subject(ns))))
    if not out and untold:
        raise ctx.cannot_look("; ".join(untold))
    return out or None


def _syn_listener(series, ns):
    """(the listener of namespace `ns` with the most SYN_RECV request sockets, their number):
    a request belongs to the listener on its local port, at its address or a wildcard one
    in its namespace (model/sockets.SynIndex). (None, 0) when no listener has any."""
    best, most = None, 0
    for lst in m.listeners(series):
        if ns is not None and lst.netns != ns:
            continue
        if (lst.syn_recv or 0) > most:
            best, most = lst, lst.syn_recv
    return best, most
