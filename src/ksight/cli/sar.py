"""`ksight sar -B | -r`: sysstat's paging and memory columns, live or from a capture."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json, seconds

HELP = "sysstat's sar -B (paging) and sar -r (memory) columns, live or from a capture"
DESCRIPTION = """\
Print the columns of sysstat's `sar -B` and `sar -r`, computed as current sysstat computes
them, from ksight snapshots. Live: one row every INTERVAL seconds, COUNT times (forever when
COUNT is left out; Ctrl-C prints the Average line). With --from: one row per consecutive pair
of snapshots in the capture, then an Average line, as `sar -f` does on a data file.

-B  pgpgin/s pgpgout/s  KiB/s read from / written to block devices (the kernel counts KiB)
    fault/s majflt/s    page faults (minor + major) / major faults (needed I/O), per second
    pgfree/s            pages put on the free lists per second
    pgscank/s pgscand/s pages scanned by kswapd / by direct reclaim (pgscan_direct_throttle,
                        a count of throttling events, is left out, as sysstat now does)
    pgsteal/s           pages reclaimed: pgsteal_anon + pgsteal_file. Older sysstat summed every
                        pgsteal_* line, counting each page twice (by reclaimer and by type).
    %vmeff              100 * pgsteal / (pgscank + pgscand). Near 100: reclaim finds what it
                        scans; low (< 30) under scanning: memory pressure is high. Above 100
                        happens when cgroup-limit, khugepaged or proactive reclaim steal pages
                        that pgscank/pgscand do not count (the JSON adds vmeff_all_pct).
-r  kbmemfree kbavail   MemFree, MemAvailable (kB)
    kbmemused %memused  MemTotal - MemAvailable, as sysstat 12.7.8 and later, and its share
                        of MemTotal. --sysstat-legacy: MemTotal - (MemFree + Buffers + Cached
                        + Slab), as sysstat 12.0-12.7.7 (Debian 12's 12.6.1) print it
    kbbuffers kbcached  Buffers, Cached
    kbcommit %commit    Committed_AS and its share of MemTotal + SwapTotal (can exceed 100)
    kbactive kbinact    Active, Inactive (anon + file LRU lists)
    kbdirty             Dirty: pages waiting to be written back

A counter that went backwards between two snapshots (wrap) shows as "reset", not as a
negative rate; a reboot between two snapshots gives a row with no rates. Columns keep sysstat's
names, order and number formats, and widen (never run together) when a value outgrows them.
"""
EPILOG = """\
examples:
  ksight sar -B 1 5                  # paging, 5 rows one second apart, then Average
  ksight sar -r 2                    # memory every 2 s until Ctrl-C
  ksight sar -B -r 1 3               # both tables
  ksight sar -B --from cap.tar.zst   # one row per pair of snapshots of a capture
  ksight sar -r --from cap/ --json   # the same, for scripts
  ksight sar -r --sysstat-legacy 1 3 # kbmemused as an older sar (12.6.1 on Debian 12) shows it
overhead: reads /proc/vmstat and /proc/meminfo once per interval (well under a millisecond).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-B", dest="paging", action="store_true", help="paging statistics (sar -B)")
    p.add_argument("-r", dest="memory", action="store_true", help="memory utilisation (sar -r)")
    p.add_argument("interval", nargs="?", type=seconds, help="seconds between rows (default 1)")
    p.add_argument("count", nargs="?", type=int, help="number of rows (default: until Ctrl-C; "
                   "1 when no interval is given)")
    p.add_argument("--sysstat-legacy", dest="sysstat_legacy", action="store_true",
                   help="sar -r kbmemused/%%memused by sysstat < 12.7.8's formula, MemTotal - "
                        "MemFree - Buffers - Cached - Slab (default: MemTotal - MemAvailable)")
    add_from(p, db=True)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..errors import UsageError
    from ..views import sar

    modes = [m for m, on in (("B", args.paging), ("r", args.memory)) if on] or ["B", "r"]
    if args.interval is not None and args.interval <= 0:
        raise UsageError("interval must be a positive number of seconds")
    if args.count is not None and args.count < 1:
        raise UsageError("count must be at least 1")
    col = Collector.open(args.from_)
    if not col.live and (args.interval is not None or args.count is not None):
        raise UsageError("with --from, rows come from the capture's snapshots: drop INTERVAL/COUNT")
    interval = args.interval if args.interval is not None else 1.0
    count = args.count if args.count is not None else (1 if args.interval is None else None)
    plan = Plan.of([Needs(sources=sar.SOURCES)])
    text = None
    if not args.json:
        from ..render.sar_text import SarText

        hint = ("no interval given: one row over 1 second (ksight sar -B 1 5 for more)"
                if col.live and args.interval is None else None)
        # live rows are printed as they come; a capture is read at once: whole tables
        text = SarText(modes, sys.stdout, stream=col.live, hint=hint)
    stream = sar.SarStream(modes, legacy=getattr(args, "sysstat_legacy", False))
    prev = None
    for snap in col.stream(plan, interval=interval, count=count):
        new = stream.add(snap)
        if text is not None:
            if prev is None:
                text.start(snap)
            text.rows(prev, new)
        prev = snap
    reports = stream.reports()
    if args.json:
        print_json(_json(reports))
    else:
        text.finish(reports)
    return 0 if all(r.rows for r in reports) else 3


def _json(reports) -> dict:
    from ..views.sar import vmeff_all

    out = {"version": 1, "tables": []}
    for r in reports:
        rows = []
        for row in list(r.rows) + ([r.average] if r.average else []):
            d = {"time": row.time, "taken_at": row.taken_at, "seconds": row.seconds,
                 "values": row.values, "resets": row.resets, "notes": row.notes}
            if r.mode == "B":
                d["vmeff_all_pct"] = vmeff_all(row)
            rows.append(d)
        out["tables"].append({"mode": r.mode, "columns": r.columns, "header": r.header,
                              "rows": rows[:len(r.rows)], "average": rows[len(r.rows)] if r.average else None,
                              "notes": r.notes, "unavailable": r.unavailable})
    return out
