"""`ksight export`: a recording (or a capture) as columnar files for pandas, DuckDB or Spark."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json

HELP = "export a recording or a capture as Parquet or CSV tables (pandas, DuckDB, Spark)"
DESCRIPTION = """\
Writes one file per table into --out (created if missing, owner-only): system (one row per
snapshot: meminfo, vmstat, snmp/netstat, stat totals, loadavg, PSI), processes (per process,
keyed by boot_id + pid + start_ticks), cgroups (per memory cgroup), cpus (per CPU ticks),
interfaces (/proc/net/dev) and disks (/proc/diskstats). Every row has `time` (UTC timestamp),
`unix_time`, `uptime_s` and `boot_id`. Values are the kernel's: counters stay cumulative
(compute rates in your tool, per boot_id), absent is null. docs/export.md lists every column.

The source is a recording (--db, from `ksight record`; default: the recorder's own file when it
exists) or a capture (--from, from `ksight capture`). --since/--until take ISO 8601 times (local
unless they say Z or +HH:MM), Unix seconds, or a time before now written with "=" (the value
starts with "-"): --since=-30m, --since=-2h, --until=-1d.
Parquet needs pyarrow (pip install 'ksight[parquet]'); CSV needs nothing.
"""
EPILOG = """\
examples:
  ksight export --db /var/lib/ksight/ksight.db --format parquet --since=-2h --out /tmp/last2h
  ksight export --from cap.tar.zst --format csv --out cap-csv
  ksight export --db rec.db --format parquet --since 2026-01-01T03:00 --until 2026-01-01T04:00
  duckdb -c "SELECT time, meminfo_anon_pages_kb FROM '/tmp/last2h/system.parquet' ORDER BY time"
  python3 -c "import pandas as pd; print(pd.read_parquet('/tmp/last2h/processes.parquet').head())"
overhead: reads the recording once, holding 256 snapshots at a time; writes with zstd (Parquet).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--db", metavar="PATH", help="a recording written by `ksight record`")
    add_from(src)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet",
                   help="file format (default parquet)")
    p.add_argument("--since", metavar="T", help="first time to export (ISO 8601, Unix s, or --since=-2h)")
    p.add_argument("--until", metavar="T", help="last time to export (same forms)")
    p.add_argument("--out", metavar="DIR", default="ksight-export",
                   help="directory for the files (default ./ksight-export)")
    p.add_argument("--tables", metavar="T,T", help="only these tables (default all: "
                   "system,processes,cgroups,cpus,interfaces,disks)")
    add_json(p)


def parse_time(text: str | None, now: float | None = None) -> float | None:
    """Unix seconds from ISO 8601 (naive = local time), Unix seconds, or -N[smhd] before now."""
    import datetime as dt
    import math
    import re
    import time

    from ..errors import UsageError

    if text is None:
        return None
    t = text.strip()
    now = time.time() if now is None else now
    if t == "now":
        return now
    m = re.fullmatch(r"-(\d+(?:\.\d+)?)\s*([smhd])", t)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        v = float(t)
        if math.isfinite(v):
            return v
    except ValueError:
        pass
    try:
        d = dt.datetime.fromisoformat(t.replace("Z", "+00:00") if t.endswith("Z") else t)
    except ValueError:
        raise UsageError(f"{text!r} is not a time: give ISO 8601 (2026-01-01T03:00, local unless "
                         "it says Z or +HH:MM), Unix seconds, or --since=-30m / -2h / -1d") from None
    if d.tzinfo is None:
        d = d.astimezone()  # local time
    return d.timestamp()


def _recording(path: str, since, until):
    from ..errors import UsageError

    try:
        from ..record.store import Recording
    except ImportError:
        raise UsageError(f"--db {path}: this ksight cannot read recordings (ksight.record.store is "
                         "missing); export a capture with --from FILE instead") from None
    try:
        rec = Recording.open(path)
    except FileNotFoundError:
        raise UsageError(f"--db {path}: no such recording") from None
    return rec.snapshots(since, until)


def _default_db() -> str | None:
    """The file `ksight record` writes by default, when this ksight has the recorder and the
    file exists."""
    import os

    try:
        from ..record.recorder import default_db
    except ImportError:
        return None
    path = default_db()
    return path if os.path.exists(path) else None


def run(args: argparse.Namespace) -> int:
    import os

    from ..errors import UsageError
    from ..views import export as ex

    since, until = parse_time(args.since), parse_time(args.until)
    if since is not None and until is not None and until < since:
        raise UsageError("--until is before --since")
    tables = ex.TABLES if not args.tables else tuple(
        t.strip() for t in args.tables.split(",") if t.strip())
    bad = [t for t in tables if t not in ex.TABLES]
    if bad:
        raise UsageError(f"--tables: unknown {', '.join(bad)}; known: {', '.join(ex.TABLES)}")
    if args.db:
        snaps = _recording(args.db, since, until)
    else:
        from ..collect.collector import Collector
        from ..collect.plan import Needs, Plan

        col = Collector.open(args.from_)
        if col.live:  # neither --db nor --from: the recorder's default file, if there is one
            db = _default_db()
            if db is None:
                raise UsageError("give the data to export: --db PATH (a recording from `ksight "
                                 "record`) or --from FILE (a capture from `ksight capture`)")
            snaps = _recording(db, since, until)
        else:
            plan = Plan.of([Needs(uses=ex.SOURCES, processes=ex.PROCESS_PARTS, window=False)])
            snaps = col.stream(plan, interval=None, count=None)
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory")
    try:
        os.makedirs(out, mode=0o700, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create it ({e.strerror})") from None
    old = os.umask(0o077)  # the files name processes and paths, as a capture does: owner only
    try:
        res = ex.write_tables(snaps, out, args.format, tables=tables, since=since, until=until)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write ({e.strerror})") from None
    finally:
        os.umask(old)
    status = 0 if res.snapshots else 3
    if args.json:
        print_json({"version": 1, "export": res})
        return status
    from ..render.export_text import render

    render(res, sys.stdout)
    return status
