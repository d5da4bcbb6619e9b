"""Connection states that pile up: CLOSE_WAIT (a leak in the application), TIME_WAIT (ports and
buckets), FIN_WAIT2 (peers that never close)."""

from __future__ import annotations

from ....model import sockets as ms
from ....model import tcp as m
from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold
from .common import (ns_file, ns_subject, ns_sysctl_ev, ns_why, socket_facts, tcp_rule, toward,
                     where)


@tcp_rule("tcp.close-wait-leak", title="A process leaks sockets in CLOSE_WAIT",
          sockets=True, netns_counters=False, window=False, socket_owners=("CLOSE_WAIT",),
          thresholds={
              "warn_sockets": Threshold(16, "CLOSE_WAIT sockets held by one process",
                                        "the peer closed and the process never called close(); "
                                        "a few in passing are normal, a pile is a leak"),
              "critical_sockets": Threshold(512, "CLOSE_WAIT sockets held by one process",
                                            "file descriptors and memory run out next"),
              "min_persistent_share": Threshold(0.5, "share of those there at the window's start "
                                                "still there at its end",
                                                "a leak keeps its sockets; a busy server that "
                                                "closes late turns them over"),
          })
def close_wait_leak(ctx: Context, r: Rule):
    """CLOSE_WAIT sockets (the peer sent FIN, the local side has not closed) per owning process,
    in every network namespace. Only sockets seen in every snapshot of the window count as held
    (a socket's identity is its sock_diag cookie), so a server closing a little late is quiet.
    Evidence: the count, its growth over the window, the peers. CLOSE_WAIT never times out:
    only close() (or the process exiting) ends it."""
    s = ctx.series
    src = socket_facts(ctx, strict=True)
    out, unsure = [], []
    for h in ms.close_wait_holders(s):
        pid, ns, n, comm = h.pid, h.netns, h.count, h.comm
        if n < r.t("warn_sockets"):
            continue
        if h.held is None:
            unsure.append(f"{comm or '?'}[{pid}] holds {n} CLOSE_WAIT sockets, but whether they "
                          f"stay cannot be told: {h.held_note}")
            continue
        held = h.held
        # judged against the sockets there at the start of the window, not the count at its end:
        # a fast leak adds more than it had (112 kept while 150 more came in 30 s is still a leak)
        base = h.counts[0] if h.counts and h.counts[0] else n
        if held < r.t("min_persistent_share") * min(base, n):
            continue
        trend = s.gauge("close_wait", lambda x, pid=pid, ns=ns: ms.close_wait_count(x, pid, ns)).trend()
        ev = [ctx.ev("CLOSE_WAIT sockets", n, "sockets", src,
                     threshold=r.t("warn_sockets"), note=f"{held} {h.held_note}"),
              ctx.ev("growth", None if len(h.counts) < 2 else h.counts[-1] - h.counts[0],
                     "sockets", src, note=(f"{trend.slope_per_s:+.2f}/s" if trend else None)),
              ctx.ev("peers", h.peers, "", src,
                     note=None if h.peers is not None else "not kept by this recording")]
        if h.oldest_ms is not None:
            ev.append(ctx.ev("age", h.oldest_ms / 1000, "s", src,
                             note=(f"the oldest: no data from its peer for that long (tcp_info "
                                   f"last_data_recv); median {(h.median_ms or 0) / 1000:.1f} s")))
        else:
            ev.append(ctx.ev("age", round(s.seconds, 3) if held and s.seconds else None,
                             "s at least", src, note="the window they were seen through"))
        who = f"{comm or '?'}[{pid}]" if pid is not None else "an unknown process"
        acts = [Action.code(f"{who}: call close() when read() returns 0 (the peer closed); check "
                            "error paths that return without closing, and connection pools that "
                            "never notice a peer's FIN",
                            why="CLOSE_WAIT lasts until the application closes: the kernel has "
                                "no timeout for it"),
                Action.command(f"ss -tanp state close-wait"
                               + (f" | grep 'pid={pid},'" if pid is not None else "")
                               + "  # the sockets and their peers"),
                ]
        if pid is not None:
            acts.append(Action.command(f"ls -l /proc/{pid}/fd | grep -c socket  # its open sockets"))
        sev = "critical" if n >= r.t("critical_sockets") else "warning"
        subj = Subject(pid=pid, comm=comm, netns=m.netns_label(ns))
        out.append(r.finding(
            sev, ev,
            f"{who} holds {n} TCP sockets in CLOSE_WAIT (peers closed their side; {held} stayed "
            f"through the window): the application never calls close() on them. Each holds a "
            f"file descriptor and its buffers until the process closes it or exits.",
            acts, subject=subj))
    if not out and unsure:
        raise ctx.cannot_look("; ".join(unsure))
    return out or None


@tcp_rule("tcp.time-wait-pressure", title="TIME_WAIT sockets near the limit, or ports running out",
          needs=("sockstat",), sockets=True, window=False, uses=("netstat", "sysctl"),
          thresholds={
              "warn_tw_share": Threshold(0.8, "of net.ipv4.tcp_max_tw_buckets",
                                         "past the limit the kernel destroys TIME_WAIT sockets "
                                         "early (TCPTimeWaitOverflow) and loses their protection"),
              "warn_port_share": Threshold(0.5, "of ip_local_port_range to one destination",
                                           "connect() to that destination starts failing with "
                                           "EADDRNOTAVAIL when the range is used up"),
              "critical_port_share": Threshold(0.9, "of ip_local_port_range to one destination",
                                               "about to run out of ports"),
          })
def time_wait_pressure(ctx: Context, r: Rule):
    """TIME_WAIT sockets (sockstat 'tw', per namespace) against net.ipv4.tcp_max_tw_buckets;
    TcpExt TCPTimeWaitOverflow moving; local ports in ip_local_port_range held towards one
    destination (address and port) against the size of the range: a client opening short
    connections to one server runs out of ports there first."""
    s = ctx.series
    src = socket_facts(ctx)
    out = []
    for ns in m.scopes(s):
        # the namespace's own limits (read inside it), and its ports against its own range
        buckets_x = m.ns_sysctl(s.last, "net.ipv4.tcp_max_tw_buckets", ns)
        reuse_x = m.ns_sysctl(s.last, "net.ipv4.tcp_tw_reuse", ns)
        buckets, reuse = buckets_x.value, reuse_x.value
        eph = m.ephemeral_ports(s.last, netns=ns)
        own = m.is_own(s, ns)
        st = m.ns_source(s.last, "sockstat", ns)
        tw = st.get("TCP", "tw") if st is not None else None
        ovf = m.ns_counter(s, m.TW_OVERFLOW, ns) if s.intervals else None
        moved = int(ovf.total or 0) if ovf is not None else 0
        share = tw / buckets if tw is not None and buckets else None
        dests = [d for d in (eph.destinations if eph else ()) if ns is None or d.netns == ns]
        worst = dests[0] if dests else None
        pshare = worst.ports_in_use / eph.size if worst is not None and eph.size else None
        hit_tw = (share is not None and share >= r.t("warn_tw_share")) or moved > 0
        hit_ports = pshare is not None and pshare >= r.t("warn_port_share")
        if not hit_tw and not hit_ports:
            continue
        ev = [ctx.ev("TIME_WAIT sockets", tw, "sockets", ns_file("/proc/net/sockstat", ns, s),
                     threshold=buckets, note=("net.ipv4.tcp_max_tw_buckets" + (
                         f" ({buckets_x.note(ns)})" if buckets_x.note(ns) else "")
                         if buckets else None)),
              ctx.ev("TCPTimeWaitOverflow", moved if ovf is not None and ovf.present else None,
                     "over the window", ns_file("/proc/net/netstat", ns, s),
                     note="TIME_WAIT sockets destroyed early: the table was full")]
        if worst is not None:
            ev.append(ctx.ev(f"ports to {worst.remote_addr}:{worst.remote_port}",
                             worst.ports_in_use, "local ports", src,
                             threshold=eph.size,
                             note=(f"{worst.time_wait} in TIME_WAIT; ip_local_port_range "
                                   f"{eph.low}-{eph.high} ({eph.size} ports"
                                   + (f"; {n})" if (n := m.ns_sysctl(
                                       s.last, "net.ipv4.ip_local_port_range", ns).note(ns))
                                      else ")"))))
        acts = []
        if reuse is not None and reuse != 1:
            acts.append(Action.sysctl("net.ipv4.tcp_tw_reuse", reuse, 1,
                                      why=ns_why(reuse_x, ns,
                                                 "lets connect() reuse a TIME_WAIT port to the "
                                                 "same destination when timestamps prove it safe "
                                                 "(2, the default, does so on loopback only)", 1)))
        acts.append(Action.code("reuse connections (HTTP keep-alive, a connection pool) instead "
                                "of one connection per request",
                                why="each closed connection leaves its port in TIME_WAIT for "
                                    "60 s on the side that closed first"))
        if eph is not None and eph.low is not None and eph.size < 50000:
            rng = f"{min(eph.low, 10000)} {max(eph.high, 65000)}"
            acts.append(Action.sysctl("net.ipv4.ip_local_port_range", f"{eph.low} {eph.high}",
                                      rng,
                                      why=ns_why(m.ns_sysctl(s.last, "net.ipv4.ip_local_port_range",
                                                             ns), ns,
                                                 "more ports per destination; keep clear of ports "
                                                 "servers listen on (ip_local_reserved_ports)",
                                                 f"'{rng}'")))
        if buckets is not None and share is not None and share >= r.t("warn_tw_share"):
            acts.append(Action.sysctl("net.ipv4.tcp_max_tw_buckets", buckets,
                                      toward(buckets, 2 * buckets),
                                      why=ns_why(buckets_x, ns,
                                                 "each TIME_WAIT socket costs ~200 bytes; "
                                                 "destroying them early risks old segments "
                                                 "hitting new connections",
                                                 toward(buckets, 2 * buckets))))
        sev = "critical" if pshare is not None and pshare >= r.t("critical_port_share") else "warning"
        what = []
        if hit_tw:
            what.append(f"{tw} TIME_WAIT sockets against tcp_max_tw_buckets {buckets}"
                        + (f", {moved} destroyed early" if moved else ""))
        if hit_ports:
            what.append(f"{worst.ports_in_use} of {eph.size} local ports held towards "
                        f"{worst.remote_addr}:{worst.remote_port}")
        subj = ns_subject(ns, socket=f"{worst.remote_addr}:{worst.remote_port}"
                          if hit_ports else None)
        out.append(r.finding(
            sev, ev,
            f"Short connections {where(ns, own)}: {'; '.join(what)}. When the ports to one "
            "destination are used up, connect() fails with EADDRNOTAVAIL; when the TIME_WAIT "
            "table is full, the kernel drops its protection against stray old segments.",
            acts, subject=subj))
    return out or None


@tcp_rule("tcp.fin-wait2", title="Many sockets wait in FIN_WAIT2 for peers that do not close",
          sockets=True, window=False, uses=("sysctl",), socket_owners=("FIN_WAIT2",),
          thresholds={
              "warn_sockets": Threshold(1000, "FIN_WAIT2 sockets in one namespace",
                                        "peers that never close their side keep these for "
                                        "tcp_fin_timeout each (orphans) or forever (sockets the "
                                        "application still holds after shutdown())"),
          })
def fin_wait2(ctx: Context, r: Rule):
    """FIN_WAIT2: this side closed and the peer acknowledged, but never sent its FIN. Orphaned
    ones (closed by the application) are freed after net.ipv4.tcp_fin_timeout; sockets only
    shut down for writing stay as long as the application holds them."""
    s = ctx.series
    src = socket_facts(ctx, strict=True)
    out = []
    for fw in ms.fin_wait2(s.last):
        ns, count, owned = fw.netns, fw.count, fw.owned
        if count < r.t("warn_sockets"):
            continue
        ev = [ctx.ev("FIN_WAIT2 sockets", count, "sockets", src,
                     threshold=r.t("warn_sockets"),
                     note=(f"{owned} still held by a process, {count - owned} orphaned"
                           if owned is not None else "how many a process still holds is not "
                           "kept by this recording")),
              ctx.ev("peers", fw.peers, "", src,
                     note=None if fw.peers is not None else "not kept by a recording")]
        acts = []
        fin_x = m.ns_sysctl(s.last, "net.ipv4.tcp_fin_timeout", ns)  # the namespace's own
        fin = fin_x.value
        if fin is not None:
            ev.append(ns_sysctl_ev(ctx, fin_x, ns, "s",
                                   note="how long an orphaned FIN_WAIT2 socket lives"))
            acts.append(Action.sysctl("net.ipv4.tcp_fin_timeout", fin, toward(fin, 15, up=False),
                                      why=ns_why(fin_x, ns,
                                                 "frees orphaned FIN_WAIT2 sockets sooner; sockets "
                                                 "the application still holds are not bound by it",
                                                 toward(fin, 15, up=False))))
        acts.append(Action.code("close() sockets after shutdown(SHUT_WR) once the peer is done, "
                                "and find why the peers never close their side"))
        out.append(r.finding("warning", ev,
                             f"{count} TCP sockets {where(ns, False)} closed their side and "
                             "wait for the peer's FIN that does not come.",
                             acts, subject=ns_subject(ns)))
    return out or None
