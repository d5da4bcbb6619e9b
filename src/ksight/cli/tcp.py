"""`ksight tcp`: retransmissions, connection states, listeners, TCP memory, ports, NIC and softnet
drops; --connections for per-connection detail; --pcap for the retransmissions in a capture."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json, seconds

HELP = "TCP and network I/O: retransmissions, states, listeners, memory, ports, drops; --connections"
DESCRIPTION = """\
One look at TCP and the network devices, over a window (default: two snapshots 1 s apart), in
every network namespace a process lives in (containers included), from /proc/PID/net/{snmp,
netstat,sockstat}, sock_diag, /proc/net/dev, /sys/class/net and /proc/net/softnet_stat:

  retransmissions   ΔRetransSegs / ΔOutSegs x 100 over the window, in the worst interval and
                    since boot, per namespace; the TcpExt breakdown: fast (TCPFastRetrans: loss
                    seen by dup ACKs/SACK), RTO (TCPTimeouts), TLP (TCPLossProbes), SYN
                    (TCPSynRetrans)
  states            sockets per state (as ss -tan counts them), and who holds them
  listeners         accept queue (sock_diag rqueue: now / most seen) against backlog (wqueue:
                    min(listen() backlog, somaxconn)); ListenOverflows, ListenDrops, SYN
                    cookies and SYN-queue drops per namespace
  TCP memory        sockstat mem (pages, machine-wide) against tcp_mem low / pressure / high
  ephemeral ports   local ports in ip_local_port_range in use, per destination
  NIC transmit      TX drops per interface and txqueuelen
  softnet           per CPU: packets processed, dropped (backlog full), time_squeeze, against
                    netdev_budget / netdev_budget_usecs / netdev_max_backlog

--connections lists each socket like `ss -tani`: queues, cwnd, ssthresh, rtt, rto,
retransmits, rcv_space, busy time and the share of it limited by the receiver's window or the
send buffer (ss -ti's busy/rwnd_limited/sndbuf_limited), the process and namespace; -p PID and
--port N filter it.
--pcap FILE lists the retransmissions in a packet capture, with their flows (what tshark's
tcp.analysis.retransmission finds).
"""
EPILOG = """\
examples:
  ksight tcp                          # two snapshots 1 s apart, every namespace
  ksight tcp 2 5                      # a 10 s window (5 intervals of 2 s)
  ksight tcp --interval 5             # one 5 s interval
  ksight tcp --json | jq '.overview.namespaces[].retrans.pct'
  ksight tcp --connections -p 1234    # the sockets of PID 1234, with tcp_info
  ksight tcp --connections --port 443 # every socket to or from port 443
  ksight tcp --from cap.tar.zst       # from a capture (ksight capture)
  ksight tcp --pcap lossy.pcap        # retransmissions in a packet capture
overhead: per snapshot, one sock_diag dump per namespace (about 30 ms at 10,000 sockets), three
small /proc/PID/net files per namespace and a handful of /proc and /sys files; no tracing.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("interval", nargs="?", type=seconds,
                   help="seconds between snapshots (default 1)")
    p.add_argument("count", nargs="?", type=int, help="intervals to watch (default 1)")
    p.add_argument("-i", "--interval", dest="interval_opt", type=seconds, metavar="S",
                   help="the same as INTERVAL")
    p.add_argument("--connections", action="store_true",
                   help="per-connection detail (like ss -tani): queues, cwnd, rtt, rto, retransmits")
    p.add_argument("-p", "--pid", type=int, help="with --connections: only this process's sockets")
    p.add_argument("--port", type=int, help="with --connections: only sockets with this local or "
                                            "remote port")
    p.add_argument("--state", action="append", metavar="STATE",
                   help="with --connections: only this state (ESTABLISHED, CLOSE_WAIT, ...; "
                        "repeatable)")
    p.add_argument("--pcap", metavar="FILE", help="the retransmissions in a packet capture file")
    p.add_argument("-n", "--top", type=int, default=10, metavar="N",
                   help="rows per table (holders, destinations; default 10)")
    add_from(p, db=True)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    if args.pcap:
        return _pcap(args)
    interval = args.interval_opt if args.interval_opt is not None else args.interval
    if args.interval_opt is not None and args.interval is not None:
        raise UsageError("give the interval once: INTERVAL or --interval")
    if args.count is not None and args.count < 1:
        raise UsageError("count must be at least 1")
    if (args.pid is not None or args.port is not None or args.state) and not args.connections:
        raise UsageError("-p, --port and --state filter --connections")
    if args.top < 1:
        raise UsageError("-n must be at least 1")
    from ..collect.collector import Collector
    from ..collect.plan import Plan
    from ..views import tcp

    col = Collector.open(args.from_)
    if not col.live and (interval is not None or args.count is not None):
        raise UsageError("with --from, the window is the capture's snapshots: drop INTERVAL/COUNT")
    if args.connections:
        snap = col.one(Plan.of([tcp.needs(window=False)]))
        states = tuple(s.upper().replace("-", "_") for s in args.state or ())
        rep = tcp.connections(snap, pid=args.pid, port=args.port, states=states)
        if args.json:
            print_json({"version": 1, "taken_at": snap.taken_at, "connections": rep})
        else:
            from ..render.tcp_text import render_connections

            render_connections(rep, sys.stdout)
        return 0 if snap.sockets is not None else 3
    plan = Plan.of([tcp.needs()])
    if col.live:
        step = interval if interval is not None else 1.0
        n = args.count if args.count is not None else 1
        from ..collect.collector import stderr_progress

        snaps = col.window(plan, seconds=step * n, step=step, progress=stderr_progress(args.json))
    else:
        snaps = col.window(plan)
    ov = tcp.overview(snaps, top=args.top)
    if args.json:
        print_json({"version": 1, "overview": ov})
    else:
        from ..render.tcp_text import render

        render(ov, sys.stdout)
    return 0 if ov.census is not None or ov.namespaces else 3


def _pcap(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    if args.connections:
        raise UsageError("--pcap reads a packet capture: drop --connections")
    try:
        from ..views import tcp_pcap
        from ..render import tcp_pcap_text
    except ImportError as e:
        raise UsageError(f"--pcap is not available in this build of ksight "
                         f"(ksight.views.tcp_pcap: {e})") from None
    report = tcp_pcap.analyse(args.pcap)
    if args.json:
        print_json({"version": 1, "pcap": report})
    else:
        tcp_pcap_text.render(report, sys.stdout)
    return 0
