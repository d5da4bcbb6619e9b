"""`ksight capture`: record raw kernel text for offline analysis on any machine."""

from __future__ import annotations

import argparse
import sys

from .common import seconds

HELP = "record the raw kernel text of N snapshots (plus a manifest) for offline analysis"
DESCRIPTION = """\
Take COUNT snapshots INTERVAL seconds apart and write exactly the kernel text ksight read
(/proc, /sys files, socket diagnostics), plus a manifest (host, kernel, page size, times, what was
unavailable and why). Any ksight, on any machine, re-parses it with --from:
  ksight check --from FILE    ksight show --from FILE    ksight sar -B --from FILE

The output is a directory, or an archive when FILE ends in .tar, .tar.gz/.tgz or .tar.zst
(other archive names, such as .zip or .tar.xz, are refused). It is always made new: an existing
name, or a symbolic link, is refused, never overwritten or followed (an existing directory is
taken only if it is empty, ours, and nobody else can write to it).

What a capture contains: the kernel's memory, CPU, disk, network and pressure counters and
settings (/proc, /sys, cgroups and their names, mount points); slabinfo (root-only in the kernel;
a capture for a rule that needs vmallocinfo also holds it, with kernel addresses); the hostname
and kernel version; for every process its name, state, owner uid and memory, and the targets of
its open fds (file paths as well as sockets); every TCP socket of every network namespace with
local and peer addresses, ports and owning uid; /proc/PID/smaps (every mapping: address, size,
resident and dirty pages, the mapped file's path) of the processes named with --pid (for
`ksight pmap PID --from`) and of the few that grow while a capture of 2 or more snapshots runs
(for the memory rules: memory.vma-growth, the growing mappings). Who can read it: only its owner (files 0600, directories 0700, also the modes
inside the archive). --redact replaces command lines, fd targets other than sockets and pipes,
peer addresses and the hostname by salted hashes (equal values stay equal within one capture);
the manifest says it was redacted. docs/security.md has the details.
"""
EPILOG = """\
examples:
  ksight capture -o incident.tar.zst                      # one snapshot, compressed
  ksight capture -o cap.tar.zst --interval 1 --count 10   # ten seconds, for rates and sar
  ksight capture -o capdir --no-processes                 # system sources only, a directory
  ksight capture -o share.tar.zst --redact                # to send elsewhere: no paths, peers, host
  ksight capture -o cap.tar.zst --pid 1234                # also 1234's memory map (ksight pmap --from)
  ksight capture -o cap.tar.zst --with blocked_tasks      # also D-state threads' stacks (cpu --blocked)

size: a snapshot with ~300 processes is ~1-3 MB raw and ~10x smaller as .tar.zst.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="directory, or .tar / .tar.gz / .tar.zst archive to write")
    p.add_argument("-i", "--interval", type=seconds, default=1.0, metavar="S",
                   help="seconds between snapshots (default 1)")
    p.add_argument("-c", "--count", type=int, default=1, metavar="N",
                   help="number of snapshots (default 1; use 2 or more for rates)")
    p.add_argument("--no-processes", action="store_true", help="skip the per-process table")
    p.add_argument("--no-sockets", action="store_true", help="skip the TCP socket table")
    p.add_argument("--pid", type=int, action="append", default=[], metavar="PID",
                   help="also record the memory map (/proc/PID/smaps) of PID in each snapshot, "
                        "for `ksight pmap PID --from`; repeat for more processes")
    p.add_argument("--with", dest="with_sources", action="append", default=[], metavar="SOURCE",
                   help="also record an opt-in source (read only when named: blocked_tasks for "
                        "`ksight cpu --blocked --from`, vmallocinfo); repeat or comma-separate")
    p.add_argument("--redact", action="store_true",
                   help="replace command lines, file paths of open fds, peer addresses and the "
                        "hostname by salted hashes (a redacted capture still replays)")
    from .common import add_from_live_only

    add_from_live_only(p, "capture records the live machine (to repack a capture, use tar)")


def run(args: argparse.Namespace) -> int:
    from ..store.capture import capture
    from .common import refuse_from

    refuse_from(args)
    from ..errors import UsageError

    if any(pid <= 0 for pid in args.pid):
        raise UsageError("--pid must be a positive number")
    from ..sources import SYSTEM

    extra = tuple(dict.fromkeys(n.strip() for w in args.with_sources for n in w.split(",")
                                if n.strip()))
    bad = [n for n in extra if n not in SYSTEM]
    if bad:
        raise UsageError(f"--with: unknown source {', '.join(bad)}; sources: {', '.join(SYSTEM)}")

    tty = sys.stderr.isatty()
    if tty:
        print(f"Capturing {args.count} snapshot(s), {args.interval:g} s apart, to {args.output}... "
              "Ctrl-C to stop.", file=sys.stderr)

    last_procs: dict = {}

    def progress(i, n, snap):
        last_procs["table"] = snap.processes or {}
        if tty:
            print(f"\r  snapshot {i}/{n}: {len(snap.sources)} sources"
                  f"{'' if snap.processes is None else f', {len(snap.processes)} processes'}"
                  f", {len(snap.unavailable)} unavailable", end="", file=sys.stderr, flush=True)

    try:
        manifest = capture(args.output, interval=args.interval, count=args.count,
                           processes=not args.no_processes, sockets=not args.no_sockets,
                           redact=args.redact, pids=tuple(dict.fromkeys(args.pid)),
                           progress=progress, extra_sources=extra)
    finally:
        if tty:
            print(file=sys.stderr)
    snaps = manifest["snapshots"]
    unavailable = {u["source"]: u["reason"] for s in snaps for u in s["unavailable"]}
    print(f"wrote {args.output}: {len(snaps)} snapshot(s), {sum(s['files'] for s in snaps)} files"
          f"{', redacted' if manifest.get('redaction') else ''} (readable by its owner only)")
    if manifest.get("write_error"):
        print(f"ksight: {args.output}: stopped after {len(snaps)} of {manifest['requested_count']} "
              f"snapshots: cannot write ({manifest['write_error']}); kept the complete snapshots "
              "and a manifest listing them", file=sys.stderr)
        return 3
    if manifest.get("interrupted"):
        print(f"  interrupted: {len(snaps)} of {manifest['requested_count']} snapshots taken; "
              "the capture is complete for those", file=sys.stderr)
        return 130
    for src, why in sorted(unavailable.items()):
        print(f"  unavailable: {src}: {why}")
    table = last_procs.get("table", {})
    for pid in dict.fromkeys(args.pid):
        p = table.get(pid)
        if p is None:
            print(f"  --pid {pid}: not recorded: no such process (in the last snapshot)")
        elif p.smaps is None:
            why = next((m.partition(": ")[2] for m in p.missing if m.startswith("smaps:")), "?")
            print(f"  --pid {pid}: smaps not recorded: {why}")
    return 0
