"""`ksight pmap PID`: procps pmap -x's columns from /proc/PID/smaps, each mapping classed."""

from __future__ import annotations

import sys

# argparse and .common (json, typing) are imported where they are used: `ksight pmap PID`'s fast
# path (fast(), from cli.main.entry) imports this module and none of them

HELP = "procps pmap -x's columns for one process, from smaps, each mapping classed"
DESCRIPTION = """\
Print the memory map of PID with the columns of procps `pmap -x`, computed as pmap computes
them from /proc/PID/smaps (the same numbers for the same smaps text):

  Address   start of the mapping
  Kbytes    its size (virtual, kB)
  RSS       resident kB (smaps Rss)
  Dirty     dirty kB (Shared_Dirty + Private_Dirty): written and not yet clean on disk/swap
  Mode      r/w/x, then s for a shared mapping (- when private), then - (pmap's column for
            swap reservation, always - on Linux)
  Class     (ksight) p private / s shared, and the kind: heap ([heap], brk), stack, anon
            (anonymous mmap), vdso (kernel pages), shm (/dev/shm, SysV, memfd, shared anonymous:
            tmpfs memory), exe (the program file), lib (a .so), file (any other mapped file)
  Mapping   as pmap: the file's base name, [ anon ], [ stack ], [ shmid=0x... ]

then the totals, and the memory summed by kind. With --from, the last snapshot of the capture
must hold this process's /proc/PID/smaps: `ksight capture --pid PID` records it (a capture
without it makes ksight pmap say so and print nothing).
"""
EPILOG = """\
examples:
  ksight pmap 1234                 # the map of process 1234, as pmap -x 1234 prints it
  ksight pmap $$ --json            # the same for scripts, with shared/anonymous/kind per mapping
  ksight pmap 1234 | sort -k3 -n | tail   # the 10 largest mappings by RSS
  ksight capture -o cap.tar.zst --pid 1234 && ksight pmap 1234 --from cap.tar.zst
                                   # record the map now, read it anywhere later
overhead: one read of /proc/PID/smaps: the kernel walks the page tables of every mapping while
it prints them (like pmap -x; about 1 us per mapping plus 1 us per MiB resident, more on huge
processes), under the process's mmap lock in read mode: the process can page-fault meanwhile
but its mmap/munmap calls wait.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: F821
    from .common import add_from, add_json

    p.add_argument("pid", type=int, metavar="PID", help="the process")
    add_from(p)
    add_json(p)


def fast(argv: list[str]) -> int | None:
    """`ksight pmap PID` on the live machine, text output, through the lean path (views/pmap_fast:
    the C reader of smaps, no Region or Mapping objects), before argparse and the collector are
    imported; the console script (cli.main.entry) calls it. Returns the exit status, or None for
    anything it does not do, so that main() runs the command as always: other arguments (--from,
    --json, --help), a PID that is not a plain positive number, a process it cannot read or
    whose smaps is not the kernel's plain form, no C extension. The text is the ordinary path's
    (tests/views/test_pmap_fast.py)."""
    if len(argv) != 1 or not argv[0].isdecimal() or not argv[0].isascii():
        return None
    pid = int(argv[0])
    if pid <= 0:
        return None
    from .main import _after_dead_runs

    try:
        _after_dead_runs("pmap")  # as main() does before every command
        from ..views.pmap_fast import build

        pm = build(pid)
        if pm is None:
            return None
        from ..render.pmap_text import render_fast

        render_fast(pm, sys.stdout)
        return 0
    except KeyboardInterrupt:
        print("ksight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`ksight pmap PID | head`), as main() treats it
        return 0
    except OSError as exc:  # the output cannot be written (a full disk): say so, no traceback
        print(f"ksight: cannot write the output: {exc}", file=sys.stderr)
        return 120


def run(args: argparse.Namespace) -> int:  # noqa: F821
    from ..collect.collector import Collector
    from ..collect.plan import Needs, Plan
    from ..errors import UsageError
    from ..views import pmap

    if args.pid <= 0:
        raise UsageError("PID must be a positive number")
    # 5,000 mappings make ~20,000 objects that live until the command ends: the cyclic garbage
    # collector would walk them over and over (~8 ms) and find nothing to free
    import gc

    gc.disable()
    col = Collector.open(args.from_)
    plan = Plan.of([Needs(processes=pmap.PARTS, pids=(args.pid,), window=False)])
    snap = col.one(plan)
    proc = (snap.processes or {}).get(args.pid)
    if proc is None:
        if col.live:
            raise UsageError(f"no process {args.pid} (it exited, or never ran)")
        raise UsageError(f"the capture {col.label} holds no process {args.pid} in its last "
                         "snapshot")
    if proc.smaps is None:
        why = next((m.partition(": ")[2] for m in proc.missing if m.startswith("smaps:")),
                   "not read")
        if col.live:
            if "exited" in why:
                raise UsageError(f"no process {args.pid}: it exited while being read")
            raise UsageError(f"cannot read proc/{args.pid}/smaps: {why}"
                             + (" (another user's process: run as root or as its owner)"
                                if "permission" in why and "even to root" not in why else ""))
        if why.startswith("malformed"):
            raise UsageError(f"the capture's proc/{args.pid}/smaps cannot be used: {why}")
        raise UsageError(f"the capture holds no proc/{args.pid}/smaps ({why}): record it with "
                         f"`ksight capture --pid {args.pid}`, or run ksight pmap on the live "
                         "machine")
    pm = pmap.build(proc)
    if args.json:
        from .common import print_json

        print_json({"version": 1, "pid": pm.pid, "command": pm.command, "exe": pm.exe,
                    "columns": list(pmap.COLUMNS), "mappings": pmap.mapping_dicts(pm),
                    "total": {"kbytes": pm.total_kbytes, "rss_kb": pm.total_rss_kb,
                              "dirty_kb": pm.total_dirty_kb},
                    "by_kind": pm.by_kind(), "notes": pm.notes})
    else:
        from ..render.pmap_text import render

        render(pm, sys.stdout)
    return 0
