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
  ksight show --list                  # the names of all sources
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="source names (see --list)")
    p.add_argument("--list", action="store_true", help="list the source names and exit")
    p.add_argument("-p", "--processes", action="store_true", help="include the process table")
    p.add_argument("-s", "--sockets", action="store_true", help="include the TCP socket table")
    p.add_argument("--snapshot", type=int, default=-1, metavar="N",
                   help="with --from: which snapshot (0 = first, -1 = last; default -1)")
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
    names = args.sources or None
    if args.from_:
        from ..store.capture import open_capture

        cap = open_capture(args.from_)
        try:
            root_index = range(len(cap.roots))[args.snapshot]
        except IndexError:
            raise UsageError(f"--snapshot {args.snapshot}: the capture has {len(cap.roots)} snapshot(s)") from None
        sub = Capture1(cap, root_index)
        snap = sub.take(sources=names, processes=args.processes, sockets=args.sockets)
    else:
        from ..collect.snapshot import take
        from ..fs import LiveRoot

        snap = take(LiveRoot(), sources=names, processes=args.processes, sockets=args.sockets)
    if args.json:
        print_json({"version": 1, "host": snap.host, "taken_at": snap.taken_at,
                    "uptime_s": snap.uptime_s, "sources": snap.sources,
                    "processes": snap.processes, "sockets": snap.sockets,
                    "unavailable": snap.unavailable})
        return 0
    from ..render.show_text import render_snapshot

    render_snapshot(snap)
    return 0


class Capture1:
    """One snapshot of a capture, re-parsed with the manifest's context."""

    def __init__(self, cap, index: int):
        self.cap, self.index = cap, index

    def take(self, **kw):
        from ..collect.snapshot import take
        from ..model.snapshot import Missing

        meta = self.cap.metas[self.index]
        known = [Missing(m["source"], m["reason"]) for m in meta.get("unavailable", [])]
        return take(self.cap.roots[self.index], host_hint=self.cap.host_hint,
                    taken_at=meta.get("taken_at"), known_unavailable=known, **kw)
