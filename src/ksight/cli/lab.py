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


def _stop_once(signum, frame):
    """First Ctrl-C / SIGTERM: stop the run. Any further one is ignored until the clean-up is
    over (the handler switches both to SIG_IGN before raising, so no second signal can land
    half-way through the unwinding)."""
    import signal

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise KeyboardInterrupt


def _run(args) -> int:
    import os
    import signal
    import time

    from ..errors import Unavailable, UsageError
    from ..lab import SCENARIOS, leftovers, sysctl

    sc = SCENARIOS.get(args.scenario)
    if sc is None:
        raise UsageError(f"unknown scenario {args.scenario!r} (see `ksight lab list`)")
    seconds = sc.default_seconds if args.seconds is None else args.seconds
    if not 0 < seconds <= 120:
        raise UsageError("--seconds must be within (0, 120]")
    old = {s: signal.signal(s, _stop_once) for s in (signal.SIGINT, signal.SIGTERM)}
    sysctl.notify = lambda msg: print(f"ksight: {msg}", file=sys.stderr, flush=True)
    saved: dict = {}
    stopped = False
    error = None
    waited = 0.0
    ran = 0.0
    try:
        print(f"Reproducing {sc.name.replace('-', ' ')} for {seconds:g} s: {sc.summary}.")
        print(f"Bounds: {sc.bounds}. Ctrl-C to stop.")
        print(f"Run `ksight check` in another terminal now; it should report: {', '.join(sc.expects)}")
        sys.stdout.flush()
        try:
            with sc.running(seconds) as run:
                saved = dict(run.info.get("sysctls_saved") or {})
                waited = run.waited_s
                if waited >= 0.5:
                    print(f"Waited {waited:.1f} s for another lab run; the fault starts now.",
                          flush=True)
                t0 = run.started
                while run.remaining() > 0:
                    if not args.quiet:
                        print(f"{time.monotonic() - t0:5.1f}s  {run.evidence()}", flush=True)
                    run.wait(1.0)
                ran = time.monotonic() - t0
        except KeyboardInterrupt:
            stopped = True
        except (OSError, TimeoutError) as exc:
            error = str(exc)
        left = leftovers(os.getpid(), saved)
    finally:
        sysctl.notify = None
        for s, h in old.items():
            signal.signal(s, h)
    if left:
        print(("Stopped" if stopped else "Ended") + "; NOT everything was cleaned up. Left:",
              flush=True)
        for x in left:
            print(f"  {x}")
        print("Run `ksight cleanup` (as root) to remove them.", flush=True)
        if error:
            print(f"ksight: {error}", file=sys.stderr)
        return 3
    if error:
        raise Unavailable(f"lab scenario {sc.name}", error)
    if stopped:
        print("Stopped; cleaned up (checked: no cgroup, namespace, loop device, swap file, work "
              "directory or changed sysctl left).", flush=True)
        return 130
    print(f"Done: the fault ran {ran:.1f} s"
          + (f" (after waiting {waited:.1f} s for another lab run)" if waited >= 0.5 else "")
          + "; everything the scenario changed is undone.")
    return 0


def run(args: argparse.Namespace) -> int:
    from .common import refuse_from

    refuse_from(args)
    cmd = getattr(args, "lab_command", None)
    if cmd == "list" or cmd is None:
        return _list()
    if cmd == "cleanup":
        import os

        from ..errors import Unavailable
        from ..lab import cleanup_stale

        if os.geteuid() != 0:
            raise Unavailable("lab cleanup", "needs root (lab runs leave cgroups, namespaces, "
                              "loop devices and sysctls only root can remove)")
        removed, kept = cleanup_stale(report=True)
        for r in removed:
            print(f"removed {r}")
        for k in kept:
            print(f"left   {k}")
        if not removed and not kept:
            print("nothing left behind by earlier lab runs")
        return 0
    return _run(args)
