"""`ksight profile`: what the CPUs run, sampled with perf (hot kernel functions and stacks,
folded stacks, an SVG flame graph)."""

from __future__ import annotations

import argparse

HELP = "what the CPUs run, sampled with perf: hottest kernel functions and stacks, flame graph"
DESCRIPTION = """\
Sample what every CPU (or one process, -p) runs, 99 times a second per CPU, with kernel and
user stacks (perf record --call-graph fp), and print:

  - where the samples fell: idle, kernel (softirq and irq shown apart), user. Idle is the
    idle task outside interrupts, as /proc/stat counts it: a softirq or interrupt that ran on
    an idle CPU (NET_RX steered to a quiet CPU) is work;
  - the hottest kernel functions: SELF = the CPU was running that function, TOTAL = that
    function or something it called (a syscall entry point's TOTAL is its whole cost);
  - the hottest functions, kernel and user (user frames need frame pointers to go deep);
  - the hottest stacks, innermost function first, and the processes sampled.

--folded writes the stacks in Brendan Gregg's folded format ("comm;root;...;leaf COUNT", the
input of flamegraph.pl, speedscope and inferno); --svg writes a self-contained flame graph
(open it in a browser; hover a frame for its name and samples; kernel frames are orange). Both
leave out idle (it would dwarf the work on a quiet machine). --kernel-only samples only
kernel mode (perf --all-kernel): cheaper, and the output is the kernel's side only.

Needs root and perf (Debian: apt install linux-perf; Ubuntu: linux-tools-$(uname -r); Fedora:
dnf install perf). ksight says what is missing when it cannot sample. Progress goes to stderr;
Ctrl-C stops early and still reports. perf runs in its own process group, recorded by PID in
/run/ksight, and is ended when ksight ends (or by the next ksight command if ksight is killed).
"""
EPILOG = """\
examples:
  ksight profile                            # 10 s of every CPU
  ksight profile --seconds 3 --kernel-only  # only what the kernel does, 3 s
  ksight profile -p 1234 --seconds 5        # one process, kernel and user stacks
  ksight profile --svg cpu.svg --folded cpu.folded   # flame graph and folded stacks
  ksight profile --json > profile.json      # for scripts (top functions, stacks, folded)
  ksight trace profile --seconds 0          # the same command, until Ctrl-C (600 s at most)
overhead: 99 samples per second per CPU, each a timer interrupt that walks the stack: a
CPU-bound loop did not slow down measurably (-1.5 % [-4.3..+5.5] CPU time, as with plain perf;
+4 % at -F 999), and ksight itself used ~0.45 s of CPU for a 3 s profile (perf record, then
`perf script` turning the samples into text, parsing, start-up); docs/benchmarks.md, issue 12.
Nothing is changed on the machine.
"""

MAX_SECONDS = 600.0
DEFAULT_FREQ = 99
DEFAULT_TOP = 25
OVERHEAD = ("low: 99 samples per second per CPU with frame-pointer stacks (about 1% of one CPU), "
            "plus `perf script` after the run")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_from_live_only, add_json, seconds_between

    add_from_live_only(p, "profiling samples the CPUs of the running machine")
    p.add_argument("-s", "--seconds", type=seconds_between(0.1, MAX_SECONDS, "--seconds"),
                   default=10.0, metavar="N", help="how long to sample (default 10, at most "
                   f"{MAX_SECONDS:g}; Ctrl-C stops earlier)")
    p.add_argument("-p", "--pid", type=int, metavar="PID", help="sample this process only")
    add_sampling_options(p)
    p.add_argument("--folded", metavar="FILE", help="write folded stacks (for flame graph tools)")
    p.add_argument("--svg", metavar="FILE", help="write an SVG flame graph")
    add_json(p)


def add_sampling_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The options of `ksight profile` that `ksight trace profile` takes too (it has its own
    --seconds, -p, --svg, --folded and --json)."""
    p.add_argument("--kernel-only", action="store_true",
                   help=prefix + "sample kernel mode only, and show kernel frames only")
    p.add_argument("-F", "--freq", type=int, default=DEFAULT_FREQ, metavar="HZ",
                   help=prefix + f"samples per second per CPU (default {DEFAULT_FREQ}; 1..2000)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N",
                   help=prefix + f"how many functions to list (default {DEFAULT_TOP})")


def run(args: argparse.Namespace) -> int:
    """`ksight profile`, and `ksight trace profile` (cli/trace.py hands its arguments here)."""
    import dataclasses
    import os
    import signal
    import sys
    import threading

    from ..errors import UsageError
    from ..trace import perf
    from ..views import profile
    from .common import print_json, refuse_from
    from .trace import _writable

    refuse_from(args)
    if not 1 <= args.freq <= 2000:
        raise UsageError("--freq: give 1..2000 samples per second")
    if args.top <= 0:
        raise UsageError("--top: give a number above 0")
    if args.pid is not None:
        if args.pid <= 0:
            raise UsageError("-p: PID must be a positive number")
        if not os.path.exists(f"/proc/{args.pid}"):
            raise UsageError(f"no process {args.pid}")
    for path, what in ((args.svg, "--svg"), (args.folded, "--folded")):
        if path:
            _writable(path, what)
    perf.check(args.pid, getattr(args, "_command", "ksight profile"))

    stop = threading.Event()
    tty = _isatty(sys.stderr)
    target = f"PID {args.pid}" if args.pid else "all CPUs"

    def progress(elapsed: float, total: float) -> None:
        if tty:
            print(f"\rsampling {target}: {elapsed:4.0f} / {total:g} s (Ctrl-C to stop)", end="",
                  file=sys.stderr, flush=True)

    def on_signal(signum, frame):
        stop.set()

    print(f"ksight: sampling {target} for {args.seconds:g} s at {args.freq} Hz"
          + (" (kernel only)" if args.kernel_only else "") + "; Ctrl-C stops early",
          file=sys.stderr, flush=True)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        got = profile.take(args.seconds, pid=args.pid, freq=args.freq,
                           kernel_only=args.kernel_only, top=args.top, stop=stop,
                           progress=progress)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if tty:
            print(file=sys.stderr)
    prof = got.profile
    if args.pid and not os.path.exists(f"/proc/{args.pid}"):
        prof = dataclasses.replace(
            prof, notes=prof.notes + (f"process {args.pid} exited during the profile",))
    files: dict[str, str] = {}
    errors: list[str] = []
    if args.folded:
        _write(args.folded, lambda: perf.folded_text(got.folded), "folded stacks", files, errors)
    if args.svg:
        from ..trace.flame import svg

        title = (f"ksight profile: {prof.target}, {prof.seconds:.1f} s, "
                 f"{prof.work_samples} samples" + (" (kernel only)" if args.kernel_only else ""))
        _write(args.svg, lambda: svg(got.folded, title=title, kernel=got.kernel), "flame graph",
               files, errors)
    if args.json:
        print_json({"version": 1, **dataclasses.asdict(prof), "files": files})
    else:
        from ..render.profile_text import render

        print(render(prof, files))
    for e in errors:
        print(f"ksight: {e}", file=sys.stderr)
    return 3 if errors else 0


def _isatty(f) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


def _write(path: str, make, what: str, files: dict, errors: list) -> None:
    try:
        text = make()
        with open(path, "w") as f:
            f.write(text)
        files[what] = path
    except OSError as exc:   # the profile itself is still printed
        errors.append(f"could not write {path}: {exc.strerror or exc}")
