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
    kbmemused %memused  MemTotal - (MemFree + Buffers + Cached + Slab), sysstat 12's definition
                        (not MemTotal - MemAvailable), and its share of MemTotal
    kbbuffers kbcached  Buffers, Cached
    kbcommit %commit    Committed_AS and its share of MemTotal + SwapTotal (can exceed 100)
    kbactive kbinact    Active, Inactive (anon + file LRU lists)
    kbdirty             Dirty: pages waiting to be written back

A counter that went backwards between two snapshots (reboot, wrap) shows as "reset", not as a
negative rate.
"""
EPILOG = """\
examples:
  ksight sar -B 1 5                  # paging, 5 rows one second apart, then Average
  ksight sar -r 2                    # memory every 2 s until Ctrl-C
  ksight sar -B -r 1 3               # both tables
  ksight sar -B --from cap.tar.zst   # one row per pair of snapshots of a capture
  ksight sar -r --from cap/ --json   # the same, for scripts
overhead: reads /proc/vmstat and /proc/meminfo once per interval (well under a millisecond).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-B", dest="paging", action="store_true", help="paging statistics (sar -B)")
    p.add_argument("-r", dest="memory", action="store_true", help="memory utilisation (sar -r)")
    p.add_argument("interval", nargs="?", type=seconds, help="seconds between rows (default 1)")
    p.add_argument("count", nargs="?", type=int, help="number of rows (default: until Ctrl-C; "
                   "1 when no interval is given)")
    add_from(p)
    add_json(p)


def _fmt(col: str, v, reset: bool) -> str:
    if v is None:
        return "reset" if reset else "-"
    if col.startswith("kb"):
        return str(int(round(v)))
    return f"{v:.2f}"


def _widths(columns, mem_total_kb) -> list[int]:
    """The narrowest widths that hold the header and the values: sar's own 9+1 per column would
    take 121 columns for -r; this keeps -B under 100 and -r as close as the names allow."""
    kb_digits = len(str(int(mem_total_kb))) if mem_total_kb else 9
    out = []
    for c in columns:
        need = kb_digits if c.startswith("kb") else 9 if c.endswith("/s") else 6
        out.append(max(len(c), need) + 1)
    return out


class _Printer:
    def __init__(self, out, columns, widths):
        self.out, self.columns, self.widths = out, columns, widths

    def head(self, time_label: str) -> None:
        cells = "".join(c.rjust(w) for c, w in zip(self.columns, self.widths))
        self.out.write(f"{time_label:<8}{cells}\n")

    def row(self, r) -> None:
        cells = "".join(_fmt(c, r.values.get(c), bool(r.resets)).rjust(w)
                        for c, w in zip(self.columns, self.widths))
        self.out.write(f"{r.time:<8}{cells}\n")
        for n in r.notes:
            self.out.write(f"# {r.time}: {n}\n")
        self.out.flush()


def _mem_total(snaps) -> int | None:
    for s in reversed(snaps):
        mi = s.get("meminfo")
        if mi is not None and mi.mem_total_kb:
            return mi.mem_total_kb
    return None


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..views import sar

    modes = [m for m, on in (("B", args.paging), ("r", args.memory)) if on] or ["B", "r"]
    if args.interval is not None and args.interval <= 0:
        raise UsageError("interval must be a positive number of seconds")
    if args.count is not None and args.count < 1:
        raise UsageError("count must be at least 1")
    if args.from_:
        from ..store.capture import open_capture

        if args.interval is not None:
            raise UsageError("with --from, rows come from the capture's snapshots: drop INTERVAL/COUNT")
        snaps = list(open_capture(args.from_).snapshots(sources=list(sar.SOURCES)))
        reports = [sar.report(snaps, m) for m in modes]
        if args.json:
            print_json(_json(reports))
            return 0
        _print_reports(reports, _mem_total(snaps))
        return 0 if all(r.rows for r in reports) else 3
    return _live(args, modes)


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


def _print_reports(reports, mem_total) -> None:
    out = sys.stdout
    if reports and reports[0].header:
        out.write(reports[0].header + "\n")
    for r in reports:
        out.write("\n")
        p = _Printer(out, r.columns, _widths(r.columns, mem_total))
        first = r.rows[0].time if r.rows else ""
        p.head(first)
        for row in r.rows:
            p.row(row)
        if r.average:
            p.row(r.average)
        for n in r.notes:
            out.write(f"# {n}\n")
        for m in r.unavailable:
            out.write(f"# unavailable: {m.source}: {m.reason}\n")


def _live(args, modes) -> int:
    import time

    from ..collect.snapshot import take
    from ..fs import LiveRoot
    from ..views import sar

    interval = args.interval if args.interval is not None else 1.0
    count = args.count if args.count is not None else (1 if args.interval is None else None)
    root = LiveRoot()
    snaps = [take(root, sources=list(sar.SOURCES))]
    rows: dict[str, list] = {m: [] for m in modes}
    printers = {}
    if not args.json:
        print(sar.header_line(snaps[0]))
        if args.interval is None:
            print("# no interval given: one row over 1 second (ksight sar -B 1 5 for more)")
        for m in modes:
            cols = sar.PAGING_COLUMNS if m == "B" else sar.MEMORY_COLUMNS
            printers[m] = _Printer(sys.stdout, cols, _widths(cols, _mem_total(snaps)))
    n = 0
    next_t = time.monotonic()
    try:
        while count is None or n < count:
            next_t += interval
            time.sleep(max(0.0, next_t - time.monotonic()))
            snap = take(root, sources=list(sar.SOURCES))
            prev = snaps[-1]
            snaps = [prev, snap]
            n += 1
            for m in modes:
                row = sar.paging_row(prev, snap) if m == "B" else sar.memory_row(snap)
                rows[m].append(row)
                if printers:
                    if n == 1 or len(modes) > 1:
                        sys.stdout.write("\n")
                        printers[m].head(sar.clock(prev))
                    printers[m].row(row)
    except KeyboardInterrupt:
        pass
    reports = []
    for m in modes:
        avg = (sar.paging_average if m == "B" else sar.memory_average)(rows[m])
        cols = sar.PAGING_COLUMNS if m == "B" else sar.MEMORY_COLUMNS
        miss = tuple(x for x in snaps[-1].unavailable if x.source in ("vmstat", "meminfo"))
        reports.append(sar.SarReport(m, cols, sar.header_line(snaps[-1]), tuple(rows[m]), avg,
                                     (), miss))
    if args.json:
        print_json(_json(reports))
        return 0
    for r in reports:
        if len(modes) > 1:
            sys.stdout.write("\n")
            printers[r.mode].head("")
        if r.average:
            printers[r.mode].row(r.average)
        for m in r.unavailable:
            sys.stdout.write(f"# unavailable: {m.source}: {m.reason}\n")
    return 0
