"""`ksight lab`: reproduce one kernel performance fault on this machine, bounded and cleaned up."""

from __future__ import annotations

import argparse
import sys

HELP = "reproduce a kernel performance fault on this machine (to learn it, or to test ksight)"
DESCRIPTION = """\
The fault lab really makes one fault happen on this machine, for a few seconds, so you can
see what it looks like and check that `ksight check` finds it. Each scenario is bounded in
time, memory and disk, runs inside its own memory cgroup or network namespace where it can,
and undoes everything afterwards (sysctls restored, cgroups, namespaces, swap files and temp
files removed), also on Ctrl-C and SIGTERM. Most scenarios need root.

While it runs it prints one line of live evidence per second (the raw kernel counters that
show the fault). Run `ksight check` in another terminal meanwhile.
"""
EPILOG = """\
examples:
  ksight lab list                        # scenarios, what ksight should report, can they run here
  ksight lab run dirty-backlog           # 8 s of dirty page backlog (vm.dirty_* lowered, restored)
  ksight lab run cgroup-reclaim --seconds 20   # a 64 MiB cgroup reclaiming its page cache
  ksight lab run swap-io                 # a small swap file and a cgroup that swaps
  ksight lab cleanup                     # remove what a killed lab run left behind
overhead: the fault is real: expect disk writes (up to ~1 GiB), dropped caches or swap I/O on
this machine for the length of the run. See docs/lab.md for each scenario's bounds.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_from_live_only

    add_from_live_only(p, "the fault lab reproduces faults on this machine")
    sub = p.add_subparsers(dest="lab_command", metavar="ACTION")
    sub.add_parser("list", help="list the scenarios and whether they can run here")
    r = sub.add_parser("run", help="reproduce one scenario")
    r.add_argument("scenario", metavar="SCENARIO", help="a name from `ksight lab list`")
    r.add_argument("--seconds", type=float, default=None, metavar="N",
                   help="how long to keep the fault going (default 8, at most 120)")
    r.add_argument("-q", "--quiet", action="store_true", help="no per-second evidence lines")
    sub.add_parser("cleanup", help="remove cgroups, namespaces and swap files of dead lab runs")


def _list() -> int:
    from ..lab import SCENARIOS, available

    print(f"{'SCENARIO':16} {'AREA':10} {'KSIGHT SHOULD REPORT':28} AVAILABLE")
    for sc in SCENARIOS.values():
        ok, why = available(sc)
        print(f"{sc.name:16} {sc.area:10} {', '.join(sc.expects):28} {'yes' if ok else 'no: ' + why}")
        print(f"{'':16} {sc.summary}")
    return 0


def _sigterm(signum, frame):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise KeyboardInterrupt


def _run(args) -> int:
    import signal
    import time

    from ..errors import UsageError
    from ..lab import SCENARIOS

    sc = SCENARIOS.get(args.scenario)
    if sc is None:
        raise UsageError(f"unknown scenario {args.scenario!r} (see `ksight lab list`)")
    seconds = sc.default_seconds if args.seconds is None else args.seconds
    if not 0 < seconds <= 120:
        raise UsageError("--seconds must be within (0, 120]")
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        print(f"Reproducing {sc.name.replace('-', ' ')} for {seconds:g} s: {sc.summary}.")
        print(f"Bounds: {sc.bounds}. Ctrl-C to stop.")
        print(f"Run `ksight check` in another terminal now; it should report: {', '.join(sc.expects)}")
        sys.stdout.flush()
        t0 = time.monotonic()
        try:
            with sc.running(seconds) as run:
                while run.remaining() > 0:
                    if not args.quiet:
                        print(f"{time.monotonic() - t0:5.1f}s  {run.evidence()}", flush=True)
                    run.wait(1.0)
        except KeyboardInterrupt:
            print("Stopped; cleaned up.", flush=True)
            return 130
        print(f"Done after {time.monotonic() - t0:.1f} s; everything the scenario changed is undone.")
        return 0
    finally:
        signal.signal(signal.SIGTERM, old)


def run(args: argparse.Namespace) -> int:
    from .common import refuse_from

    refuse_from(args)
    cmd = getattr(args, "lab_command", None)
    if cmd == "list" or cmd is None:
        return _list()
    if cmd == "cleanup":
        from ..lab import cleanup_stale

        removed = cleanup_stale()
        for r in removed:
            print(f"removed {r}")
        if not removed:
            print("nothing left behind by earlier lab runs")
        return 0
    return _run(args)
