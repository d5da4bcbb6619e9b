"""`ksight oom`: who the OOM killer would pick, the kills that happened, how to protect a service."""

from __future__ import annotations

import argparse
import sys

from .common import add_from, add_json, print_json

HELP = "who the OOM killer would pick, recent OOM kills (cgroup or machine), how to protect"
DESCRIPTION = """\
The OOM killer, before and after:

  order     every process by /proc/PID/oom_score, with oom_score_adj and the size the kernel
            scores (mm/oom_kill.c oom_badness: RSS + swap + page tables, shifted by
            oom_score_adj x RAM+swap/1000); "est" recomputes the score from those numbers
            (fs/proc/base.c: (1000 + points x 1000 / (RAM + swap)) x 2/3). A memory cgroup at
            its limit picks among its own processes only.
  kills     vmstat oom_kill since boot; memory cgroups whose memory.events (v2) or
            memory.oom_control (v1) counted an OOM kill; and the kernel log (/dev/kmsg, live as
            root): the victim, its cgroup, and whether a cgroup's limit ("Memory cgroup out of
            memory", constraint=CONSTRAINT_MEMCG) or the whole machine ("Out of memory:") ran
            out. A capture holds the log only if `ksight capture` was told to read kmsg_oom.
  console   warns when a serial console and kernel.printk's console log level would print the
            whole OOM report (one line per task) at serial speed.
  protect   how to keep a critical service alive, as actions: a negative oom_score_adj
            (choom / OOMScoreAdjust=), or its memory cgroup's memory.min (v2).
"""
EPILOG = """\
examples:
  ksight oom                            # this machine, now (as root for the kernel log)
  ksight oom --protect 1234             # actions to protect PID 1234 (its cgroup's memory.min)
  ksight oom --json | jq '.report.candidates[:5]'
  ksight oom --from cap.tar.zst         # a capture (the kernel log only if it was recorded)
overhead: reads oom_score, oom_score_adj, stat, status, cmdline and cgroup of every process
(about what `ps` costs), walks the memory cgroup tree for memory.events, and reads the kernel
log ring buffer once through /dev/kmsg (up to a few MB; nothing is consumed).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protect", metavar="PID", help="actions to protect this process from the OOM killer")
    p.add_argument("-n", "--top", type=int, default=15, metavar="N", help="victims to list (default 15)")
    add_from(p)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..views import oom as ov

    needs = Needs(sources=ov.SOURCES, uses=ov.USES, processes=ov.PARTS,
                  cgroup_files=ov.CGROUP_FILES, window=False)
    snap = Collector.open(args.from_).one(Plan.of([needs]))
    rep = ov.report(snap, protect=args.protect)
    status = 3 if snap.get("meminfo") is None or not rep.candidates else 0
    if args.json:
        print_json({"version": 1, "taken_at": snap.taken_at, "report": rep})
        return status
    from ..render.oom_text import render

    render(rep, sys.stdout, top=args.top)
    return status
