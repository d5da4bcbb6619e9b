"""`ksight cleanup`: remove what dead ksight runs left behind (tracing, mounts, processes, lab)."""

from __future__ import annotations

import argparse
import os

HELP = "remove what killed ksight runs left: tracefs instances, mounts, perf/bpftrace, lab"
DESCRIPTION = """\
ksight records, in /run/ksight, everything it leaves in the kernel or on disk while it runs
(tracefs instances with their events, a tracefs mount it made, perf and bpftrace children,
temporary directories, fault-lab cgroups, namespaces, loop devices, swap files and sysctls)
and undoes it when it ends. A run that is killed (SIGKILL, OOM, a crash) cannot: the next
ksight command of any kind removes what the dead run recorded. `ksight cleanup` does the same,
thoroughly: it also looks for leftovers of older ksight versions, and says what it removed
and what it left (and why).

Nothing is removed while its owner lives: an owner is dead when the lock it held on its
record is free (the kernel drops it when a process dies), which holds across PID namespaces.
A leftover named only by a PID (older versions) is removed only when no process anywhere has
that PID; from inside a child PID namespace such leftovers are kept and listed.
"""
EPILOG = """\
examples:
  sudo ksight cleanup              # remove what killed runs left, and say what
  sudo ksight cleanup --dry-run    # only list what dead runs recorded
overhead: none worth measuring; runs at the start of every ksight command when /run/ksight
exists (a single stat otherwise).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--dry-run", action="store_true", help="list, do not remove")


def run(args: argparse.Namespace) -> int:
    from ..errors import Unavailable

    if os.geteuid() != 0:
        raise Unavailable("cleanup", "needs root (what ksight leaves behind is root's: tracefs, "
                          "cgroups, namespaces, loop devices, sysctls)")
    from ..trace.leftovers import leftovers_summary, reap

    if args.dry_run:
        items = leftovers_summary()
        for x in items:
            print(x)
        if not items:
            print("no dead ksight run recorded anything")
        return 0
    rep = reap(thorough=True)
    for r in rep.removed:
        print(f"removed {r}")
    for k in rep.kept:
        print(f"left    {k}")
    if not rep.removed and not rep.kept:
        print("nothing left behind by earlier ksight runs")
    return 0


def reap_quietly() -> None:
    """The hook every command runs first (cli/main.py), only when /run/ksight exists: undo
    what dead runs recorded; one line on stderr if anything was removed or could not be."""
    import sys

    if os.geteuid() != 0:
        return
    try:
        from ..trace.leftovers import reap

        rep = reap()
    except Exception as exc:   # never stop the command the person asked for
        print(f"ksight: cleaning up after a dead run failed: {exc}", file=sys.stderr)
        return
    if rep.removed:
        print(f"ksight: removed what a killed ksight run left: {'; '.join(rep.removed)}",
              file=sys.stderr)
