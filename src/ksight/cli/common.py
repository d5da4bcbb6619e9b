"""Options and plumbing every subcommand shares: --from, --json, reading snapshots."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

FROM_HELP = ("work on a capture (directory, .tar, .tar.gz or .tar.zst from `ksight capture`, or a "
             "single proc/sys tree) instead of the live machine")


def seconds(text: str) -> float:
    """argparse type for a duration: a finite number of seconds above zero (nan and inf are
    refused: they would spin or overflow the sleep)."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return v


def seconds_between(low: float, high: float, what: str):
    """argparse type for a duration within [low, high] seconds, saying why outside."""
    def parse(text: str) -> float:
        v = seconds(text)
        if v < low or v > high:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be between {low:g} and {high:g} s")
        return v
    return parse


def add_from(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_", metavar="FILE_OR_DIR", help=FROM_HELP)


def add_from_live_only(p: argparse.ArgumentParser, what: str) -> None:
    """--from for commands that act on the running kernel: accepted so every command takes it,
    refused at run time with the reason (see refuse_from)."""
    p.add_argument("--from", dest="from_", metavar="FILE_OR_DIR",
                   help=f"not possible here: {what} (a capture holds counters, not live kernel state)")
    p.set_defaults(_live_only=what)


def refuse_from(args: argparse.Namespace) -> None:
    if getattr(args, "from_", None):
        from ..errors import UsageError

        raise UsageError(f"--from: {args._live_only}; a capture holds the kernel's counters, not a "
                         f"running kernel. Run `ksight check --from {args.from_}` or "
                         f"`ksight show --from {args.from_}` to analyse it.")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("-j", "--json", action="store_true", help="print JSON for scripts")


def print_json(obj: Any) -> None:
    """JSON on stdout: indented for a person at a terminal; compact otherwise (pipes, files),
    which lets json use its C encoder (indent forces the pure-Python one, ~5x slower)."""
    from ..render.jsonable import jsonable

    data = jsonable(obj)
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        text = json.dumps(data, indent=1)
    else:
        text = json.dumps(data, separators=(",", ":"))
    sys.stdout.write(text)
    sys.stdout.write("\n")


def warn(msg: str) -> None:
    print(f"ksight: {msg}", file=sys.stderr)
