"""`ksight leak`: watch processes for N seconds and report which grow, and what grows in them."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json, seconds_between

HELP = "watch processes and report which grow: RSS/VSZ/VMA trends, the mappings that grew, --trace"
DESCRIPTION = """\
Watch every process (or the PIDs named) for --seconds (default 10), one snapshot every
--interval (default 2 s, shorter for a watch under 10 s so that it holds 6 snapshots: a trend
needs 5 or more), and report the processes that grow steadily: the shape of a leak.
Ctrl-C ends the watch early and still reports (two snapshots at least).

For each process the trend of each measure over the watch (a least-squares line: start, end,
growth, slope, the last half's slope, r2, intervals up/down):
  anon   RssAnon + VmSwap (/proc/PID/status): malloc'ed and mmap'ed private memory, swapped or not
  RSS    VmRSS               VSZ  VmSize (address space)    VMAs  the number of mappings (smaps)
  file / shmem / swap   RssFile, RssShmem, VmSwap: which type of memory grows
A process is GROWING when anon (RSS before Linux 4.5), VSZ or its mapping count grew in almost
every interval, along a line (r2 >= 0.8), still at half its pace or more in the last half of
the watch, and past the memory rules' floors (`ksight check --rules`: 1 MiB and 64 kB/s of
anon, 64 MiB and 1 MiB/s of VSZ, 5 mappings and 0.5/s). One that grew and then slowed down (a
cache warming up, a pool being filled) or went up and down is listed apart: not a leak.

For a growing process: the mappings that appeared or grew (address range, size, growth, heap or
anon, Rss), heap (brk) against mmap, and the recurring size of the new mappings (one mmap call
repeated without munmap). smaps costs the kernel a page-table walk per mapping, so it is read
only for the few processes that grow (at most 4 per snapshot, those that grew 1 MiB or more
since the first look); a process that starts growing late may show its trends without mappings.

--trace (live, root): after the watch, trace for --trace-seconds the calls behind the growing
mappings: mmap calls of the recurring size (filtered in the kernel by length), brk calls of a
process whose [heap] grows, and for one anonymous mapping that grows by steps (adjacent mmaps
merge into one mapping) the mmap calls of that process up to the step's length. It prints who made them (PID, TID, command) and, when perf runs
here, the user stacks of the first growing process (frame-pointer unwinding: a program built
without frame pointers shows only its innermost frames, and the report says so). Tracing is
switched off and removed afterwards, also on Ctrl-C.

Exit status: 0 no process grows, 1 some process grows, 3 could not judge (too few snapshots for
a trend, as in a two-snapshot capture; a usage error; no such PID).
"""
EPILOG = """\
examples:
  ksight leak                         # every process, 10 s: which grow, and what grows in them
  ksight leak 1234 5678 --seconds 60  # two processes, a minute (slow leaks need longer)
  ksight leak --interval 1            # a snapshot a second (twice the CPU of the default)
  ksight leak --trace                 # ... then catch the mmap/brk calls behind the growth
  ksight leak 1234 --trace --trace-seconds 20   # a mapping added every 10 s: trace longer
  ksight leak --json | jq '.growing[] | {pid, comm, verdict}'
  ksight leak --from cap.tar.zst      # a capture (`ksight capture -i 1 -c 11`): trends, and the
                                      # mappings of the processes that grew while it was taken
overhead: one read of stat and status per process per snapshot (about 25 us each: ~25 ms per
snapshot at 1,000 processes) plus smaps of at most 4 growing processes (~5-15 ms); a 10 s
watch at 1,000 processes used ~3-4 % of one CPU, about what `pidstat -r 1 10` uses
(docs/benchmarks.md); --trace costs one
filtered tracepoint per mmap call (and per brk call) while it runs, and perf for the stacks.
"""

MAX_S = 86400.0
# Each snapshot scans every process (stat and status: ~25 us each, ~25 ms at 1,000 processes)
# and smaps of the growing few: one every 2 s keeps a 10 s watch under 5 % of a CPU there
# (docs/benchmarks.md, issue 10) and still gives the 5 points a trend needs, with one to spare.
DEFAULT_STEP_S = 2.0
MIN_STEPS = 5


def _pid(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a PID (a number)") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive PID")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pids", nargs="*", type=_pid, metavar="PID",
                   help="only these processes (default: every process)")
    p.add_argument("-s", "--seconds", type=seconds_between(0.01, MAX_S, "the watch"), default=10.0,
                   metavar="N", help="how long to watch (default 10; a trend needs 5 snapshots or more)")
    p.add_argument("-i", "--interval", type=seconds_between(0.01, MAX_S, "the interval"),
                   default=None, metavar="S",
                   help=f"seconds between snapshots (default {DEFAULT_STEP_S:g}, or the watch / "
                        f"{MIN_STEPS} when that is shorter)")
    p.add_argument("--trace", action="store_true",
                   help="after the watch, trace the mmap/brk calls behind the growing mappings "
                        "(live, root)")
    p.add_argument("--trace-seconds", type=seconds_between(0.1, 600, "the trace"), default=5.0,
                   metavar="N", help="how long --trace traces (default 5)")
    p.add_argument("--no-stacks", dest="stacks", action="store_false",
                   help="--trace without perf's user stacks")
    add_from(p)
    add_json(p)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..errors import UsageError
    from ..views import leak

    if args.interval is None:
        args.interval = min(DEFAULT_STEP_S, args.seconds / MIN_STEPS)
    if args.interval > args.seconds:
        raise UsageError(f"--interval {args.interval:g} is longer than the watch (--seconds "
                         f"{args.seconds:g})")
    col = Collector.open(args.from_)
    if args.trace and not col.live:
        raise UsageError("--trace traces the running kernel: it cannot run on a capture")
    pids = tuple(dict.fromkeys(args.pids))
    plan = Plan.of([Needs(sources=leak.SOURCES, uses=leak.USES, processes=leak.PARTS, pids=pids)])
    interrupted = []

    def progress(msg: str) -> None:
        if msg.startswith("interrupted"):
            interrupted.append(True)
            _say("ksight leak: interrupted: reporting the watch so far")
            return
        who = f"PID {', '.join(map(str, pids))}" if pids else "every process"
        n = max(int(round(args.seconds / args.interval)), 1) + 1
        _say(f"ksight leak: watching {who} for {args.seconds:g} s ({n} snapshots, one every "
             f"{args.interval:g} s)... Ctrl-C ends early and still reports.")

    try:
        snaps = col.window(plan, seconds=args.seconds, step=args.interval,
                           progress=progress if col.live else None)
    except KeyboardInterrupt:
        raise UsageError("interrupted before two snapshots were taken: nothing to compare") from None
    rep = leak.build(snaps, pids=pids, me=leak.own_pid(col.live))
    if pids and not (rep.growing or rep.levelled or rep.named):
        raise UsageError(f"no such process: {', '.join(map(str, pids))}")
    if interrupted:
        rep = dataclasses.replace(rep, interrupted=True)
    if args.trace:
        rep = dataclasses.replace(rep, trace=_trace(rep, args))
    if args.json:
        print_json(_json(rep))
    else:
        from ..render.leak_text import render

        render(rep, sys.stdout)
    if rep.growing:
        return 1
    return 0 if rep.judged else 3


def _json(rep) -> dict:
    from ..render.jsonable import jsonable

    return {"version": 1, **jsonable(rep)}


def _trace(rep, args):
    from ..errors import Unavailable
    from ..trace.recipes.mmap import CatchResult, catch_live
    from ..views.leak import trace_targets

    targets = trace_targets(rep)
    if not targets:
        return CatchResult(targets=(), seconds=0.0, backend="tracefs", events=0, lost=0,
                           enabled=(), filters={}, callers=(),
                           notes=("nothing to trace: no growing process made new anonymous "
                                  "mappings of a recurring size or grew its [heap]",))
    try:
        return catch_live(targets, args.trace_seconds, stacks=args.stacks, say=_say)
    except Unavailable as exc:
        return CatchResult(targets=tuple(targets), seconds=0.0, backend="tracefs", events=0,
                           lost=0, enabled=(), filters={}, callers=(),
                           errors=(f"could not trace: {exc.source}: {exc.reason}",))
