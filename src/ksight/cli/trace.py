"""`ksight trace RECIPE`: who, where and how long, from kernel tracepoints and CPU sampling."""

from __future__ import annotations

import argparse

HELP = "trace a question (retrans, reclaim, mmap, oom, profile, ...) with tracepoints or perf"
DESCRIPTION = """\
Trace what counters only count: which flows retransmit, which processes stall in reclaim,
which code maps memory of a given size, who was OOM-killed and why. Each RECIPE enables a few
tracepoints, with kernel-side filters, in a private tracefs instance (never the global
buffer), aggregates as events arrive, and prints a summary at the end. `profile` is
`ksight profile` (CPU stacks sampled with perf; same options, same output, same JSON).

reclaim and softirq can also run as a bpftrace program (--backend, default auto: bpftrace
when it is installed and runs, else tracefs): the latency/time histograms are then built in
the kernel and only the final maps are read. The output says which backend ran and why.

Every trace is bounded: --seconds, --max-events, --buffer-kb (kernel memory per CPU). Lost
events (ring buffer full) are counted and shown. Events missing on this kernel are named,
with the alternative used. On exit, Ctrl-C, SIGTERM, and at the next run after a crash,
tracing is switched off and the instance removed; tracefs is unmounted again if ksight
mounted it. Needs root.

recipes:
  retrans     TCP retransmits per flow (addresses, ports, state, owning process)
  reclaim     direct / memory-cgroup reclaim latency per process and cgroup; kswapd wake-ups
  compaction  who stalls in memory compaction, and for how long
  writeback   processes throttled by balance_dirty_pages, and their pause time
  buflimit    sockets refused memory (send or receive side)
  mmap        mmap/munmap/brk calls (of --size bytes) per process; --stacks for user stacks
  oom         OOM victims: PID, memory, cgroup, constraint
  kmalloc     kernel memory allocated and not freed, by call site (HIGH overhead)
  softirq     softirq time per kind and CPU
  profile     = `ksight profile`: hottest functions and stacks, flame graph (perf)
"""
EPILOG = """\
examples:
  ksight trace reclaim                      # direct reclaim stalls for 10 s
  ksight trace retrans --seconds 30         # retransmitting flows, 30 s
  ksight trace mmap --size 7340032 -p 1234  # who maps 7 MiB blocks, PID 1234 only
  ksight trace mmap --size 7340032 --stacks # ... with the user-space stacks (perf)
  ksight trace oom --seconds 0              # wait for OOM kills until Ctrl-C
  ksight trace profile --svg cpu.svg --folded cpu.folded   # = ksight profile ...
  ksight trace softirq --json               # for scripts
  ksight trace softirq --backend tracefs    # without bpftrace even when it is installed
  ksight trace --list                       # recipes, their events and overhead
  ksight trace --check                      # which backends and events work here

OVERHEAD: tracepoints cost roughly 0.1-0.3 us per event when enabled; kernel-side filters
drop unwanted events before they are written. retrans, reclaim, compaction, writeback,
buflimit and oom fire rarely and cost nothing measurable; mmap with --size costs one
filtered tracepoint per mmap call; softirq is moderate (two events per softirq); kmalloc
is HIGH (every kernel allocation: several % of CPU on a busy machine, keep it short);
profile samples at 99 Hz per CPU (~1% of a CPU). See docs/tracing.md for measured figures.
"""


MAX_BUFFER_KB = 256 * 1024      # per CPU: 256 MiB of kernel memory on each CPU is plenty
MIN_BUFFER_KB = 4
PERF_MAX_S = 600.0              # profile / mmap --stacks "until Ctrl-C" still ends by itself
PROFILE = "profile"             # `ksight trace profile` is `ksight profile` (cli/profile.py)


def _seconds(text: str) -> float:
    """--seconds: 0 (until Ctrl-C) or a finite number of seconds above 0."""
    from .common import seconds

    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return seconds(text)


def _buffer_kb(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of KiB") from None
    if not MIN_BUFFER_KB <= v <= MAX_BUFFER_KB:
        raise argparse.ArgumentTypeError(
            f"{text}: give {MIN_BUFFER_KB}..{MAX_BUFFER_KB} KiB per CPU (the ring buffer is "
            "kernel memory on every CPU)")
    return v


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text}: give a number above 0")
    return v


def _writable(path: str, what: str) -> None:
    """Refuse an output file that cannot be written, before tracing (not after)."""
    import os

    from ..errors import UsageError

    d = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise UsageError(f"{what} {path}: is a directory")
    if not os.path.isdir(d):
        raise UsageError(f"{what} {path}: directory {d} does not exist")
    if not os.access(d, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{what} {path}: not writable")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_from_live_only, add_json

    add_from_live_only(p, "tracing needs the live machine's tracepoints")

    p.add_argument("recipe", nargs="?", metavar="RECIPE", help="what to trace (see --list)")
    p.add_argument("-s", "--seconds", type=_seconds, default=10.0,
                   help="how long to trace (default 10; 0 = until Ctrl-C; profile: at most "
                        f"{PERF_MAX_S:g} s)")
    p.add_argument("--size", type=int, metavar="BYTES", help="mmap: only calls of this length")
    p.add_argument("-p", "--pid", type=int, metavar="PID", help="mmap, profile: only this PID")
    p.add_argument("--stacks", action="store_true", help="mmap: also record user-space stacks with perf")
    p.add_argument("--max-events", type=_positive, default=2_000_000, metavar="N",
                   help="stop tracing after N events (default 2000000)")
    p.add_argument("--buffer-kb", type=_buffer_kb, metavar="KB",
                   help=f"ring buffer per CPU in KiB, {MIN_BUFFER_KB}..{MAX_BUFFER_KB} (default "
                        "depends on the recipe)")
    p.add_argument("--svg", metavar="FILE", help="profile: write an SVG flame graph")
    p.add_argument("--folded", metavar="FILE", help="profile: write folded stacks")
    from .profile import add_sampling_options

    add_sampling_options(p, prefix="profile: ")
    p.add_argument("--backend", choices=("auto", "tracefs", "bpftrace"), default="auto",
                   help="reclaim, softirq: aggregate in the kernel with bpftrace (auto: when "
                        "bpftrace is installed and runs, else tracefs; default auto)")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--check", action="store_true", help="say which backends and events work here")
    add_json(p)


def _check(args) -> int:
    from ..errors import Unavailable
    from ..trace import bpftrace, perf
    from ..trace.recipes import RECIPES
    from ..trace.session import check_events

    rows = {}
    try:
        evs = sorted({e for r in RECIPES.values() for e in r.events})
        rows["events"] = check_events(evs)
        rows["tracefs"] = "usable"
    except Unavailable as exc:
        rows["tracefs"] = exc.reason
    rows["perf"] = perf.available()[1]
    rows["bpftrace"] = bpftrace.available()[1]
    if args.json:
        from .common import print_json

        print_json(rows)
        return 0
    print(f"tracefs:  {rows['tracefs']}")
    print(f"perf:     {rows['perf']}")
    print(f"bpftrace: {rows['bpftrace']}")
    for e, ok in rows.get("events", {}).items():
        print(f"  {'ok     ' if ok else 'MISSING'} {e}")
    return 0


def _options(args) -> dict:
    if args.recipe == "mmap":
        return {"size": args.size, "pid": args.pid}
    return {}


def _profile(args) -> int:
    """`ksight trace profile`: `ksight profile` with the same arguments (0 s: until Ctrl-C,
    which still ends by itself after PERF_MAX_S)."""
    from ..errors import UsageError
    from . import profile

    for given, what in ((args.size is not None, "--size"), (args.stacks, "--stacks"),
                        (args.buffer_kb, "--buffer-kb"),
                        (args.max_events != 2_000_000, "--max-events"),
                        (args.backend != "auto", "--backend")):
        if given:
            raise UsageError(f"{what} does not apply to profile (it samples with perf; see "
                             "`ksight profile --help`)")
    if args.seconds == 0:
        args.seconds = PERF_MAX_S
    elif not 0.1 <= args.seconds <= PERF_MAX_S:
        raise UsageError(f"--seconds: profile samples 0.1 to {PERF_MAX_S:g} s (0: until Ctrl-C)")
    args._command = "ksight trace profile"
    return profile.run(args)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    from ..errors import UsageError
    from ..fs import LiveRoot
    from ..trace.recipes import RECIPES, get
    from .common import refuse_from

    refuse_from(args)

    if args.list:
        for r in RECIPES.values():
            print(f"{r.name:<11} {r.question}\n{'':<11} events: {', '.join(r.events)}\n"
                  f"{'':<11} backends: {', '.join(r.backends)}\n{'':<11} overhead: {r.overhead}")
        from .profile import OVERHEAD

        print(f"{PROFILE:<11} `ksight profile`: what the CPUs run (sampling, kernel and user "
              f"stacks)\n{'':<11} events: perf CPU sampling (cpu-clock or cycles)\n{'':<11} "
              f"backends: perf\n{'':<11} overhead: {OVERHEAD}")
        return 0
    if args.check:
        return _check(args)
    if not args.recipe:
        raise UsageError("name a RECIPE (see `ksight trace --list`)")
    if args.recipe == PROFILE:
        return _profile(args)
    from .profile import DEFAULT_FREQ, DEFAULT_TOP

    for given, what in ((args.svg, "--svg"), (args.folded, "--folded"),
                        (args.kernel_only, "--kernel-only"), (args.freq != DEFAULT_FREQ, "--freq"),
                        (args.top != DEFAULT_TOP, "--top")):
        if given:
            raise UsageError(f"{what} applies to profile only")
    cls = get(args.recipe)
    root = LiveRoot()
    opts = _options(args)
    fallback = None
    from ..trace import bpftrace

    backend, why = bpftrace.choose(args.backend, "bpftrace" in cls.backends)
    if backend == "bpftrace":
        opts["backend"] = "bpftrace"
    recipe = cls(root, **opts)
    seconds = args.seconds if args.seconds > 0 else None
    kw = {"max_events": args.max_events}
    if args.buffer_kb:
        kw["buffer_kb"] = args.buffer_kb
    print(recipe.headline(seconds), file=sys.stderr if args.json else sys.stdout, flush=True)
    stack_rec = None
    # Ctrl-C and SIGTERM end the trace early (the summary is still printed); handlers are in
    # place before tracing (and perf) start, so a signal during set-up cannot skip the clean-up.
    from ..trace.session import interruptible

    def _fallback(exc):
        # auto: bpftrace runs but this program does not (e.g. a probe missing on this
        # kernel): say so and trace with tracefs instead
        nonlocal recipe, backend, why, fallback
        if backend != "bpftrace" or args.backend == "bpftrace":
            raise exc
        fallback = f"bpftrace failed ({exc.reason}); used tracefs instead"
        recipe = cls(root, **{**opts, "backend": "tracefs"})
        backend, why = "tracefs", fallback
        print(f"ksight: {fallback}", file=sys.stderr, flush=True)
        return recipe.session(seconds, **kw)

    with interruptible() as run:
        if args.recipe == "mmap" and args.stacks:
            from ..trace.perf import Record

            flt = f"len == {args.size}" if args.size else None
            stack_rec = run.enter(Record(seconds=min(seconds or PERF_MAX_S, PERF_MAX_S),
                                         events=["syscalls:sys_enter_mmap"], filter=flt,
                                         pid=args.pid, command="ksight trace mmap --stacks"))
        t = run.trace(recipe.session(seconds, **kw), fallback=_fallback)
    res = recipe.result(t)
    extra: dict = {"backend_why": why}
    if fallback:
        extra["notes"] = res.notes + (fallback,)
    if stack_rec is not None:
        from ..trace.recipes.mmap import stacks_of

        extra["stacks"] = stacks_of(stack_rec.samples)
    res = dataclasses.replace(res, **extra)
    if args.json:
        from .common import print_json

        print_json(res)
    else:
        from ..render.trace_text import render

        print(render(res))
    return 0
