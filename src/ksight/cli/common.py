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


def add_from(p: argparse.ArgumentParser, db: bool = False) -> None:
    """--from; with db=True also --db PATH --at/--since/--until (a recording: add_db)."""
    p.add_argument("--from", dest="from_", metavar="FILE_OR_DIR", help=FROM_HELP)
    if db:
        add_db(p)


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


# ---------------------------------------------------------------- --db: the past, from a recording
DB_HELP = ("read the past from a recording of `ksight record` (a SQLite file) instead of the "
           "live machine; with --at T or --since T --until T")
TIME_HELP = ("T: an ISO time (2026-01-31T03:12, local unless it ends in Z or +HH:MM), a clock "
             "time within the last day (03:12), relative to now (-10m, -2h, -1d), or Unix seconds")


class RecordingSpec(str):
    """What `--db PATH` (and --at/--since/--until) put in `args.from_`: the path, with the
    parsed arguments at hand, so `Collector.open(args.from_)` opens the recording's window and
    no command changes more than the line that adds the options (add_from(p, db=True))."""

    def __new__(cls, path: str | None, ns: argparse.Namespace):
        self = super().__new__(cls, path or "")
        self.path = path
        self.ns = ns
        return self

    def times(self, now: float | None = None) -> tuple[float | None, float | None, float | None]:
        """(at, since, until) as Unix seconds (None where not given)."""
        ns = self.ns
        return tuple(None if getattr(ns, k, None) is None else parse_time(getattr(ns, k), now)
                     for k in ("db_at", "db_since", "db_until"))


class _DbAction(argparse.Action):
    def __call__(self, parser, ns, value, option_string=None):
        cur = getattr(ns, "from_", None)
        if cur and not isinstance(cur, RecordingSpec):
            parser.error("--from and --db: give one (a capture or a recording)")
        setattr(ns, "from_", RecordingSpec(value, ns))


class _TimeAction(argparse.Action):
    def __call__(self, parser, ns, value, option_string=None):
        try:
            parse_time(value)
        except ValueError as e:
            parser.error(f"{option_string} {value!r}: {e}")
        setattr(ns, self.dest, value)
        cur = getattr(ns, "from_", None)
        if cur is None:  # --db may come later; without it Collector.open says it is missing
            setattr(ns, "from_", RecordingSpec(None, ns))


def add_db(p: argparse.ArgumentParser) -> None:
    """--db PATH, --at T, --since T, --until T: look at the past in a recording."""
    g = p.add_argument_group("the past, from a recording (ksight record)", TIME_HELP)
    g.add_argument("--db", action=_DbAction, dest="db_path", metavar="PATH", help=DB_HELP)
    g.add_argument("--at", action=_TimeAction, dest="db_at", metavar="T",
                   help="the moment to look at (a window ends there)")
    g.add_argument("--since", action=_TimeAction, dest="db_since", metavar="T",
                   help="from this time")
    g.add_argument("--until", action=_TimeAction, dest="db_until", metavar="T",
                   help="to this time (default: the end of the recording)")


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds of T: '2026-01-31T03:12[:05][Z|+01:00]' (local time without a zone),
    '03:12[:05]' (the last time the clock showed it: today, or yesterday if that is still to
    come), '-10m' / '-90s' / '-2h' / '-1d' (before now), or Unix seconds ('1769830320')."""
    import datetime as dt
    import re
    import time as _time

    now = _time.time() if now is None else now
    s = str(text).strip()
    m = re.fullmatch(r"(?:-|now\s*-\s*)(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?", s) or \
        re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?[\s-]ago", s)
    if m:
        mult = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - float(m.group(1)) * mult
    if re.fullmatch(r"\d{9,}(\.\d+)?", s):
        return float(s)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?", s)
    if m:
        h, mi, sec = int(m.group(1)), int(m.group(2)), float(m.group(3) or 0)
        if h > 23 or mi > 59 or sec >= 60:
            raise ValueError("not a time of day")
        today = dt.datetime.fromtimestamp(now).replace(hour=h, minute=mi, second=int(sec),
                                                       microsecond=int(sec % 1 * 1e6))
        t = today.timestamp()
        return t - 86400 if t > now else t
    try:
        d = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise ValueError("give an ISO time (2026-01-31T03:12), a clock time (03:12), "
                         "a relative time (-10m) or Unix seconds") from None
    return d.timestamp()  # naive: local time
