"""`ksight record`: the flight recorder. Samples the kernel every S seconds into a SQLite file."""

from __future__ import annotations

import argparse
import sys

from .common import add_from_live_only, add_json, print_json, seconds_between

HELP = "flight recorder: sample every S seconds into a SQLite file, for check/sar/top --db and report"
DESCRIPTION = """\
Record the machine continuously: every S seconds (default 1) one sample with what every rule
reads (the system sources, the N largest processes by memory and the N busiest by CPU, any process
a rule is watching, socket-state summaries), stored as one compressed frame per sample in a SQLite
file (WAL mode, no server). A keyframe every 60 samples; the frames between are differences; once
the next keyframe comes, the frames since the last one are kept as one blob.

Read it back with `--db PATH` on check, sar, top (and cpu, tcp): `--at T`, `--since T --until T`
with T an ISO time (2026-01-31T03:12), a clock time today (03:12), or relative (-10m, -2h).

Default file: $STATE_DIRECTORY/ksight.db under systemd, /var/lib/ksight/ksight.db as root, else
$XDG_STATE_HOME/ksight/ksight.db. Only one recorder writes a file at a time: a second one says
which pid holds it and exits with status 3. SIGTERM or Ctrl-C finish the sample being taken and
exit 0. A recorder killed with SIGKILL loses at most the sample it was writing.

--retention bounds what is kept: an age (7d, 12h, 90min; a bare number is days) and/or a size on
disk (500MB, 2GiB; both: 7d,500MB). Old data goes in whole pieces (a keyframe and its frames).
"""
EPILOG = """\
examples:
  ksight record                              # every second into the default file, until stopped
  ksight record --db /tmp/k.db --seconds 600 # ten minutes, then exit
  ksight record --interval 5 --retention 7d,1GB
  ksight record --processes 100              # keep the 100 largest and 100 busiest processes
  ksight record --skip vmallocinfo --skip process_maps   # cheaper samples, two rules fewer
  ksight check --db /var/lib/ksight/ksight.db --since 03:10 --until 03:15
  ksight top --db /var/lib/ksight/ksight.db --at -1h
  systemctl enable --now ksight-record       # contrib/ksight-record.service (README)
overhead: one sample reads every area's sources (a few costly ones, and settings, every 10th
sample: vmallocinfo, slabinfo, sysctl, netclass, process_maps; carried between, and each sample
says so), stat and status of the processes it keeps, every process's stat every 5th sample to
choose them (later while the kept ones account for the CPU used), and the socket table every 30th
(docs/benchmarks.md, issue 13); ~1.5-2 KB per sample on disk at 1 s for a small machine.
"""


def _processes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes") from None
    if n < 0 or n > 100000:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 to 100000 processes")
    return n


def _retention(text: str):
    from ..errors import UsageError
    from ..record.store import Retention

    try:
        return Retention.parse(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interval", type=seconds_between(0.05, 3600, "the interval"), default=1.0,
                   metavar="S", help="seconds between samples (default 1)")
    p.add_argument("--db", metavar="PATH", help="the recording file (default: see above)")
    p.add_argument("--retention", type=_retention, metavar="DAYS|SIZE",
                   help="keep this much: 7d, 12h, 500MB, or both (7d,500MB); default: everything")
    p.add_argument("--processes", type=_processes, default=50, metavar="N",
                   help="processes kept per sample: the N largest by memory and the N busiest by "
                        "CPU (default 50 each)")
    p.add_argument("--trigger", action="append", metavar="RULE_ID",
                   help="only these rules capture deep evidence when they fire (repeatable)")
    p.add_argument("--seconds", type=seconds_between(0.05, 10 * 365 * 86400, "--seconds"),
                   metavar="N", help="stop after N seconds (default: until SIGTERM or Ctrl-C)")
    p.add_argument("--skip", action="append", metavar="SOURCE", default=[],
                   help="leave this source out of every sample (repeatable), e.g. vmallocinfo or "
                        "process_maps, the costliest: the rules that need it then say they could "
                        "not look on the recording")
    p.add_argument("--keyframe-every", type=int, default=None, metavar="K", help=argparse.SUPPRESS)
    add_from_live_only(p, "the recorder samples the live machine")
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..record.recorder import Recorder, default_db
    from .common import refuse_from

    refuse_from(args)
    db = args.db or default_db()
    tty = sys.stderr.isatty() and not args.json
    progress = (lambda msg: print(f"\n{msg}", file=sys.stderr, flush=True)) if tty else None
    if args.keyframe_every is not None and args.keyframe_every < 1:
        from ..errors import UsageError

        raise UsageError("--keyframe-every must be at least 1")
    col = Collector.open(args.from_)
    rec = Recorder(col, db, interval=args.interval, retention=args.retention,
                   processes=args.processes, triggers=tuple(args.trigger) if args.trigger else None,
                   seconds=args.seconds, keyframe_every=args.keyframe_every, progress=progress,
                   heartbeat=_heartbeat if tty else None, skip=tuple(args.skip))
    if tty:
        print(f"ksight record: sampling every {args.interval:g} s into {db} "
              f"(keeping {args.retention.describe() if args.retention else 'everything'}); "
              "Ctrl-C to stop", file=sys.stderr)
    st = rec.run()
    if tty:
        print(file=sys.stderr)
        if st.watcher:
            print(f"ksight record: {st.watcher}", file=sys.stderr)
    summary = {"db": db, "samples": st.samples, "bytes": st.bytes, "failed": st.failed,
               "cpu_ms_per_sample": round(st.cpu_s / st.samples * 1000, 3) if st.samples else None,
               "findings": st.findings, "last_error": st.last_error, "watcher": st.watcher,
               "rankings": st.rankings, "rankings_postponed": st.postponed}
    if args.json:
        print_json(summary)
    elif tty:
        print(f"ksight record: {st.samples} samples, {st.bytes} bytes into {db}"
              + (f", {st.failed} failed ({st.last_error})" if st.failed else ""), file=sys.stderr)
    return 1 if st.failed and not st.samples else 0


def _heartbeat(st) -> None:
    """One line on the terminal, rewritten after each sample."""
    from ..render.units import duration, size

    n = max(st.samples, 1)
    print(f"\rksight record: {st.samples} samples, {size(st.bytes)}, {size(st.bytes / n)} and "
          f"{st.cpu_s / n * 1000:.1f} ms CPU per sample, {duration(st.elapsed_s)}   ",
          end="", file=sys.stderr, flush=True)
