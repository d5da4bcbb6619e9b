"""Entry point of the `ksight` command."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

# subcommand -> module under ksight.cli. Order is the order `ksight --help` lists them in.
COMMANDS = {
    "check": "check",
    "show": "show",
    "capture": "capture",
    "pagecache": "pagecache",
    "sar": "sar",
    "trace": "trace",
    "lab": "lab",
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


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on a usage error, which `ksight check` uses for "critical":
    usage errors exit with 3 ("could not diagnose"), with one line on stderr."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(3, f"ksight: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ksight", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ksight {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(f"ksight.cli.{modname}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ksight.cli.{modname}":
                continue  # not built yet
            raise
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=getattr(mod, "EPILOG", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import KsightError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KsightError as exc:
        print(f"ksight: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("ksight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
