"""`ksight sysctl --area AREA`: audit the kernel settings of one area."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json

HELP = "audit the sysctls of an area (tcp): current value, what a busy server wants, why"
DESCRIPTION = """\
For each setting of the area: its current value, the value recommended for a busy server and
why, and what goes wrong when it is off. Settings this kernel does not have are named (e.g.
net.ipv4.tcp_tw_recycle, removed in Linux 4.12). Nothing is changed: the lines to set a value
are printed for you to apply.

Areas:
  tcp   handshake (tcp_syn_retries, tcp_synack_retries, tcp_max_syn_backlog, tcp_syncookies),
        queues (somaxconn, tcp_abort_on_overflow, netdev_budget...), teardown (tcp_fin_timeout,
        tcp_max_tw_buckets, tcp_tw_reuse, tcp_tw_recycle), buffers (tcp_rmem/tcp_wmem against
        rmem_max/wmem_max, tcp_mem, tcp_moderate_rcvbuf), ports and routes (ip_local_port_range,
        initcwnd of each route: live only, from `ip route`; route metrics are not in /proc, so a
        capture has none).

The sysctls are those of ksight's own network namespace (per-namespace ones such as
tcp_max_tw_buckets can differ inside a container). Exit status: 0 nothing to review, 1 some
settings to review, 3 the sysctls could not be read.
"""
EPILOG = """\
examples:
  ksight sysctl --area tcp                  # this machine
  ksight sysctl --area tcp -v               # why and the consequence for every setting
  ksight sysctl --area tcp --json | jq '.audit.knobs[] | select(.status=="review")'
  ksight sysctl --area tcp --from cap.tar.zst   # the sysctls recorded in a capture
  sudo nsenter -t PID -n ksight sysctl --area tcp   # inside a container's network namespace
overhead: reads ~25 files under /proc/sys once and runs `ip route` twice (live).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..views.sysctl_audit import AREAS

    p.add_argument("-a", "--area", choices=sorted(AREAS), default="tcp",
                   help="which settings (default tcp)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="why and the consequence for every setting, not only those to review")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..views import sysctl_audit as sa

    col = Collector.open(args.from_)
    snap = col.one(Plan.of([Needs(sources=("sysctl",), window=False)]))
    sysctls = snap.get("sysctl")
    if sysctls is None:
        m = snap.missing("sysctl")
        print(f"ksight: the sysctls could not be read: {m.reason if m else 'not collected'}",
              file=sys.stderr)
        return 3
    if col.live:
        routes_text, why = sa.live_routes()
    else:
        routes_text, why = None, sa.CAPTURE_ROUTES_NOTE
    audit = sa.audit(args.area, sysctls, routes_text=routes_text, routes_note=why,
                     page_size=snap.host.page_size)
    status = 1 if audit.to_review or (audit.routes and audit.routes.status == "review") else 0
    if args.json:
        print_json({"version": 1, "taken_at": snap.taken_at, "audit": audit})
        return status
    from ..render.sysctl_text import render

    render(audit, sys.stdout, verbose=args.verbose)
    return status
