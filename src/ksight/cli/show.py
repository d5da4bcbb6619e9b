"""`ksight show`: the parsed snapshot, as ksight sees it."""

from __future__ import annotations

import argparse

from .common import add_from, add_json, print_json

HELP = "print the parsed kernel sources (a snapshot) for people or scripts"
DESCRIPTION = """\
Print what ksight reads from the kernel, parsed: one snapshot of the named sources (all
system sources when none are named). Sources that could not be read are listed at the end
with the reason (permission denied, missing on this kernel, process exited).
"""
EPILOG = """\
examples:
  ksight show                         # every system source
  ksight show meminfo vmstat          # just these
  ksight show --processes --json      # add the process table, as JSON
  ksight show --from cap.tar.zst      # the last snapshot of a capture
  ksight show meminfo --from cap.tar.zst --snapshot 0   # its first snapshot
  ksight show --list                  # the names of all sources
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="source names (see --list)")
    p.add_argument("--list", action="store_true", help="list the source names and exit")
    p.add_argument("-p", "--processes", action="store_true", help="include the process table")
    p.add_argument("-s", "--sockets", action="store_true", help="include the TCP socket table")
    p.add_argument("--snapshot", type=int, default=-1, metavar="N",
                   help="with --from: which snapshot (0 = first, -1 = last; default -1); "
                   "live, there is one: now")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..sources import SYSTEM

    if args.list:
        for s in SYSTEM.values():
            print(f"{s.name:14} {s.doc}")
        return 0
    unknown = [s for s in args.sources if s not in SYSTEM]
    if unknown:
        raise UsageError(f"unknown source(s): {', '.join(unknown)} (see `ksight show --list`)")
    import dataclasses

    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..collect.processes import DEFAULT_DETAIL

    names = tuple(args.sources or SYSTEM)
    needs = Needs(sources=names, processes=DEFAULT_DETAIL if args.processes else (),
                  sockets=args.sockets)
    # exactly the sources asked for (Plan.of adds uptime, the clock of a series: one look needs none)
    plan = dataclasses.replace(Plan.of([needs]), sources=names)
    snap = Collector.open(args.from_).one(plan, args.snapshot)
    if args.json:
        print_json({"version": 1, "host": snap.host, "taken_at": snap.taken_at,
                    "uptime_s": snap.uptime_s, "sources": snap.sources,
                    "processes": snap.processes, "sockets": snap.sockets,
                    "unavailable": snap.unavailable})
        return 0
    from ..render.show_text import render_snapshot

    render_snapshot(snap)
    return 0
