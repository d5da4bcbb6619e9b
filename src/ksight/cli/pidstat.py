"""`ksight pidstat -r`: sysstat's pidstat -r columns per process, live or from a capture."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json, seconds

HELP = "sysstat's pidstat -r columns (page faults/s, VSZ, RSS, share of RAM) per process"
DESCRIPTION = """\
Print the columns of sysstat's `pidstat -r`, computed as pidstat computes them, from ksight
snapshots: one block of rows every INTERVAL seconds, COUNT times (forever when COUNT is left
out; Ctrl-C prints the Average section), then Average. With --from: one block per consecutive
pair of snapshots of the capture.

  UID       real user id            PID      process id
  minflt/s  minor faults per second: pages mapped without I/O (first touch, page cache hits)
  majflt/s  major faults per second: pages that needed I/O (swap-in, file read)
  VSZ       virtual size, kB (stat vsize)   RSS  resident, kB (stat rss x page size)
  %MEM      RSS / MemTotal
Without -p, only processes whose faults, VSZ or RSS moved in the interval are shown, as pidstat
does. A PID reused by another process between two samples starts a new process (no rate across
it): processes are told apart by PID and start time.
"""
EPILOG = """\
examples:
  ksight pidstat -r 1 5            # the processes that faulted, each second, 5 times, then Average
  ksight pidstat -r -p 1234 1      # one process every second until Ctrl-C
  ksight pidstat -r -p 1234,5678 2 3 --json   # two processes, for scripts
  ksight pidstat -r --from cap/    # one block per pair of snapshots of a capture
overhead: reads stat and status of every process (or only of -p's) and /proc/meminfo once per
interval: about 20 us per process (~20 ms on 1,000 processes), with -p a fraction of a ms.
"""


def _pids(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(t) for t in text.split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give PIDs as numbers, comma-separated") from None
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive PIDs")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-r", dest="memory", action="store_true",
                   help="page faults and memory (the only report; accepted as pidstat spells it)")
    p.add_argument("-p", dest="pids", type=_pids, metavar="PID[,PID...]",
                   help="only these processes (shown in every interval, active or not)")
    p.add_argument("interval", nargs="?", type=seconds, help="seconds between samples (default 1)")
    p.add_argument("count", nargs="?", type=int, help="number of intervals (default: until "
                   "Ctrl-C; 1 when no interval is given)")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..errors import UsageError
    from ..views import pidstat
    from ..views.sar import clock, header_line

    if args.count is not None and args.count < 1:
        raise UsageError("count must be at least 1")
    col = Collector.open(args.from_)
    if not col.live and (args.interval is not None or args.count is not None):
        raise UsageError("with --from, intervals come from the capture's snapshots: drop INTERVAL/COUNT")
    interval = args.interval if args.interval is not None else 1.0
    count = args.count if args.count is not None else (1 if args.interval is None else None)
    plan = Plan.of([Needs(sources=pidstat.SOURCES, processes=pidstat.PARTS,
                          pids=tuple(args.pids or ()))])
    stream = pidstat.PidstatStream(args.pids, clock=clock)
    out = {"version": 1, "columns": list(pidstat.COLUMNS), "intervals": [], "average": []}
    text = None if args.json else sys.stdout
    n = 0
    prev = None
    for snap in col.stream(plan, interval=interval, count=count):
        if n == 0 and text is not None:
            text.write(header_line(snap) + "\n")
        rows = stream.add(snap)
        if n > 0:
            out["intervals"].append({"time": clock(snap), "rows": rows})
            if text is not None and rows:
                from ..render.pidstat_text import block

                text.write("\n")
                block(text, clock(prev), rows)  # pidstat: header at the earlier sample's time
                text.flush()
        n += 1
        prev = snap
    if n < 2:
        raise UsageError("pidstat needs two snapshots (the capture holds one)")
    avg = stream.average()
    out["average"] = avg
    if args.json:
        print_json(out)
    elif avg:
        from ..render.pidstat_text import block

        text.write("\n")
        block(text, "Average:", avg)
    return 0
