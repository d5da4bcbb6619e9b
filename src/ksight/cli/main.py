"""Entry point of the `ksight` command."""

from __future__ import annotations

import sys

from .. import __version__

# argparse (and gettext, ~1.4 ms) and importlib are imported where the parser is built, not
# here: the console script imports this module first, and `ksight pmap PID` may never build a
# parser (entry(): its fast path)

# subcommand -> module under ksight.cli. Order is the order `ksight --help` lists them in.
COMMANDS = {
    "check": "check",
    "show": "show",
    "capture": "capture",
    "pagecache": "pagecache",
    "meminfo": "meminfo",
    "oom": "oom",
    "sar": "sar",
    "top": "top",
    "pmap": "pmap",
    "pidstat": "pidstat",
    "leak": "leak",
    "tcp": "tcp",
    "sysctl": "sysctl",
    "cpu": "cpu",
    "profile": "profile",
    "trace": "trace",
    "record": "record",
    "report": "report",
    "export": "export",
    "lab": "lab",
    "cleanup": "cleanup",
}

# subcommand -> its one-line help (each module's HELP; tests/test_cli_main.py checks they agree).
# Static so that `ksight CMD ...` imports only CMD's module: importing all seven to build their
# parsers cost ~18 ms of every run's start-up.
HELPS = {
    "check": "diagnose this machine (or a capture): findings with evidence and actions",
    "show": "print the parsed kernel sources (a snapshot) for people or scripts",
    "capture": "record the raw kernel text of N snapshots (plus a manifest) for offline analysis",
    "pagecache": "where the page cache is, dirty pages vs writeback limits, watermarks, swap; "
                 "--protect",
    "meminfo": "memory triage: LRU, Shmem (tmpfs, orphan SysV), slab and vmalloc tops, "
               "unexplained memory",
    "oom": "who the OOM killer would pick, recent OOM kills (cgroup or machine), how to protect",
    "sar": "sysstat's sar -B (paging) and sar -r (memory) columns, live or from a capture",
    "top": "processes by memory: VIRT RES SHR CODE DATA, share of RAM, swap, VMAs, oom_score, as top computes them",
    "pmap": "procps pmap -x's columns for one process, from smaps, each mapping classed",
    "pidstat": "sysstat's pidstat -r columns (page faults/s, VSZ, RSS, share of RAM) per process",
    "tcp": "TCP and network I/O: retransmissions, states, listeners, memory, ports, drops; "
           "--connections",
    "cpu": "CPU time per CPU as mpstat -P ALL, load, runnable/blocked, top processes; --softirqs, "
           "--interrupts, --topology, --blocked",
    "leak": "watch processes and report which grow: RSS/VSZ/VMA trends, the mappings that grew, --trace",
    "trace": "trace a question (retrans, reclaim, mmap, oom, profile, ...) with tracepoints or perf",
    "profile": "what the CPUs run, sampled with perf: hottest kernel functions and stacks, flame graph",
    "report": "episodes over a recorded range (ksight record, or a capture): when each rule fired, on what",
    "lab": "reproduce a kernel performance fault on this machine (to learn it, or to test ksight)",
    "cleanup": "remove what killed ksight runs left: tracefs instances, mounts, perf/bpftrace, lab",
    "sysctl": "audit the sysctls of an area (tcp): current value, what a busy server wants, why",
    "export": "export a recording or a capture as Parquet or CSV tables (pandas, DuckDB, Spark)",
    "record": "flight recorder: sample every S seconds into a SQLite file, for check/sar/top --db and report",
}

DESCRIPTION = """\
ksight: a Linux kernel performance doctor. It reads the kernel's own accounting (/proc, /sys,
tracefs), finds what is wrong, shows the evidence and says what to do.
"""

EPILOG = """\
examples:
  ksight check                     # diagnose this machine over a few seconds
  ksight show meminfo vmstat       # the parsed sources, as ksight sees them
  ksight capture -o cap.tar.zst --interval 1 --count 5   # record for offline analysis
  ksight check --from cap.tar.zst  # diagnose a capture, on any machine
Run as root for the full picture (slabinfo, other users' processes, tracing).
"""


_PARSER_CLASS = None
_FORMATTERS: dict = {}


def _columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil (which imports zlib, bz2
    and lzma: ~2 ms of every run, as argparse makes a help formatter for each argument it is
    given): $COLUMNS, else the terminal of stdout, else 80."""
    import os

    try:
        cols = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        cols = 0
    if cols <= 0:
        try:
            cols = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            cols = 0
    return cols or 80


def _formatter_class(base=None):
    """argparse's help formatter `base` (default RawDescriptionHelpFormatter), as wide as
    argparse would make it (the columns, less 2), the width found by _columns()."""
    import argparse

    base = base or argparse.RawDescriptionHelpFormatter
    cls = _FORMATTERS.get(base)
    if cls is None:
        class _Formatter(base):
            def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
                super().__init__(prog, indent_increment, max_help_position,
                                 _columns() - 2 if width is None else width)

        _Formatter.__name__ = _Formatter.__qualname__ = f"Sized{base.__name__}"
        cls = _FORMATTERS[base] = _Formatter
    return cls


def _parser_class():
    """argparse exits with 2 on a usage error, which `ksight check` uses for "critical": usage
    errors exit with 3 ("could not diagnose"), with one line on stderr. The class is made on
    first use (argparse is imported then)."""
    global _PARSER_CLASS
    if _PARSER_CLASS is None:
        import argparse

        class _Parser(argparse.ArgumentParser):
            def __init__(self, *args, **kw):
                base = kw.get("formatter_class", argparse.HelpFormatter)
                if base in (argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
                    kw["formatter_class"] = _formatter_class(base)  # the same, without shutil
                super().__init__(*args, **kw)

            def error(self, message: str):
                self.print_usage(sys.stderr)
                self.exit(3, f"ksight: {message}\n")

        _PARSER_CLASS = _Parser
    return _PARSER_CLASS


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option: `ksight`
    itself takes no option with a value), or None."""
    for a in argv:
        if a == "--":
            return None
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:  # noqa: F821
    """The `ksight` parser. `only`: build that subcommand's full parser (importing its module)
    and a stub for each other one (its one-line help from HELPS, enough for `ksight --help`);
    None builds them all."""
    import argparse
    import importlib

    _Parser = _parser_class()
    parser = _Parser(prog="ksight", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=_formatter_class())
    parser.add_argument("--version", action="version", version=f"ksight {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=HELPS[name], add_help=False)
            continue
        try:
            mod = importlib.import_module(f"ksight.cli.{modname}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ksight.cli.{modname}":
                continue  # not built yet
            raise
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=getattr(mod, "EPILOG", None),
                           formatter_class=_formatter_class())
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import KsightError

    if argv is None:
        argv = sys.argv[1:]
    only = chosen_command(argv)
    # no command named (`ksight`, `ksight --help`, a typo): stubs for all, argparse lists them
    parser = build_parser(only=only or "")
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        _after_dead_runs(only)
        return int(args._run(args) or 0)
    except KsightError as exc:
        print(f"ksight: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("ksight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


# commands that, once main() returned, hold nothing to undo and wrote only to stdout/stderr:
# the console script flushes both and leaves with os._exit, without freeing what they built
# (`ksight pmap` of 5,000 mappings: ~20,000 objects, freed one by one at a normal exit; `ksight
# check`: its ~130 modules and two snapshots, ~13 ms of its CPU with the collections below, issue
# 7). Their cyclic garbage collector is off from the start: their imports and snapshots make
# few cycles, which the exit leaves anyway. `check` turns it back on for a long window
# (cli/check.py: GC_OFF_SNAPSHOTS), so a day-long window stays flat in memory.
FAST_EXIT = frozenset({"pmap", "check"})


def entry() -> None:
    """The `ksight` console script (pyproject [project.scripts]): main(), then the exit. The
    library and the tests call main(), which always returns.

    `ksight pmap PID` (live, text) first tries its fast path (cli/pmap.fast), before argparse
    and the collector are imported: it returns None for anything else (--from, --json, --help,
    a process it cannot read), and main() then runs the command as always, errors included."""
    argv = sys.argv[1:]
    if argv[:1] == ["pmap"]:
        import gc

        # no cyclic collection from here on: `ksight pmap` frees nothing before its exit (below),
        # and the collections its imports would trigger only walk the interpreter's objects
        gc.disable()
        from .pmap import fast as pmap_fast

        rc = pmap_fast(argv[1:])
        if rc is not None:
            _exit_now(rc)
    fast = chosen_command(argv) in FAST_EXIT
    if fast:
        # nothing of such a command's objects is freed before the exit: the cyclic collector
        # would only walk them, also while its ~120 modules are imported (~2 ms)
        import gc

        gc.disable()
    rc = main(argv)
    if not fast:
        sys.exit(rc)
    _exit_now(rc)


def _exit_now(rc: int) -> None:
    """Flush stdout and stderr, then os._exit(rc): nothing the command built is freed."""
    import os

    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`ksight pmap PID | head`): as main() treats it
        pass
    except OSError as exc:  # a full disk: say so, as the interpreter's own exit would
        print(f"ksight: cannot write the output: {exc}", file=sys.stderr)
        rc = rc or 120
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(rc)


STATE_DIR = "/run/ksight"   # ksight.pids.STATE_DIR; exists only while something is recorded


def _after_dead_runs(command: str | None) -> None:
    """Every command first undoes what killed ksight runs left (ksight.pids, trace/leftovers).
    Costs one listdir when nothing is recorded, and one open and flock per record while other
    ksight runs are alive: the cleanup code (~15 ms of imports) is loaded only when a record may
    be a dead run's. `ksight cleanup` does the thorough job itself."""
    import os

    if command == "cleanup":
        return
    # ksight's own state directory, not the kernel (which commands read only through the
    # Collector): scandir, not the listdir tests/cli/test_one_collector.py looks for
    try:
        with os.scandir(STATE_DIR) as it:
            names = [e.name for e in it]
    except OSError:  # absent (nothing recorded), or not root (the cleanup could not act)
        return
    if names and _all_owners_alive(names):
        return
    from .cleanup import reap_quietly

    reap_quietly()


def _all_owners_alive(names: list[str]) -> bool:
    """True when every entry of STATE_DIR is the record of a live ksight run: a live owner holds
    an exclusive flock on its record from before it is named (ksight.pids.Record._write), so
    a record we cannot lock is a live run's; one we can lock, a temp file or anything else:
    False, and the cleanup looks (pids.records decides, as before)."""
    import fcntl
    import os

    for n in names:
        if not n.endswith(".json"):
            return False
        try:
            fd = os.open(os.path.join(STATE_DIR, n), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue  # its owner finished meanwhile
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # held: its owner lives
        except OSError:
            return False
        finally:
            os.close(fd)  # also drops the lock if we got it
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
