"""`ksight report`: the rules over a recorded range, as episodes (text, JSON or an HTML page)."""

from __future__ import annotations

import argparse

from .common import add_from, add_json

HELP = "episodes over a recorded range (ksight record, or a capture): when each rule fired, on what"
DESCRIPTION = """\
Run the rules of `ksight check` over a recorded range, window by window (default windows of
60 s: rates judged per interval inside each, so a 5 s burst is seen at its peak), and list
episodes instead of one line per sample: the rule, its subject (a process, a cgroup, a CPU, the
machine), when it started and ended, the evidence of its worst window, and the deep-evidence
bundle the recorder captured when it fired (traces, smaps, stacks), if any.

Reads a recording of `ksight record` (--db; the recorder's default store when neither --db nor
--from is given) or a capture of `ksight capture` (--from). --since and --until take a time:
Unix seconds, an ISO date ('2026-12-01 03:00', '2026-12-01T03:00:00'), a time of today ('03:00'),
or a time before now ('-2h', '-30m', '-1d', '-90s': write it with '=', as in --since=-2h,
or it is taken for an option).

--json prints the view the HTML page draws (charts, episodes, verdict, judged range, rules
that could not look): the fields are in docs/report-json.md. The charts of a long range keep,
per time bucket, each line's lowest and highest sample, so a one-second peak is never lost.

Overhead: a range of a recording longer than 2 hours is judged in two processes when the
machine has a second CPU (each half decoded and judged apart, then added: the same episodes
and charts; a day at 1 s takes ~15-20 s of CPU in all). KSIGHT_REPORT_JOBS=1: one process.

Exit status: 0 every rule looked and no episode at warning or above, 1 warning, 2 critical,
3 could not diagnose (a rule could not look and nothing worse was found: -v says which).
"""
EPILOG = """\
examples:
  ksight report                                  # the recorder's default store, all of it
  ksight report --db /var/lib/ksight/rec.db --since=-2h
  ksight report --since '2026-12-01 03:00' --until '2026-12-01 04:00' --area memory
  ksight report --json | jq '.episodes[] | {rule, subject, start, end}'
  ksight report --html day.html --since=-1d      # one self-contained page with charts
  ksight report --from cap.tar.zst               # a capture of `ksight capture`, as a recording
"""


def parse_time(text: str, now: float | None = None) -> float:
    """Every command's --since/--until grammar (cli/common.parse_time, when this ksight has the
    recorder's) else the same forms parsed here; an argparse type."""
    try:
        from .common import parse_time as common
    except ImportError:
        return _parse_time(text, now)
    try:
        return common(text, now)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: {e}") from None


def _parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from '1790000000', '2026-12-01 03:00[:00]', '2026-12-01T03:00', '03:00[:00]'
    (today, local time) or '-2h' / '-30m' / '-1d' / '-90s' (before now)."""
    import datetime
    import re
    import time

    t = text.strip()
    now = time.time() if now is None else now
    m = re.fullmatch(r"-(\d+(?:\.\d+)?)\s*([smhd]?)", t)
    if m:
        mult = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - float(m.group(1)) * mult
    try:
        v = float(t)
        if v > 0:
            return v
    except ValueError:
        pass
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", t):
        today = datetime.datetime.fromtimestamp(now).date().isoformat()
        t = f"{today} {t}"
    try:
        dt = datetime.datetime.fromisoformat(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give Unix seconds, '2026-12-01 03:00', '03:00' or '-2h'") from None
    return dt.timestamp()


def _positive(text: str) -> float:
    from .common import seconds

    return seconds(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--db", metavar="PATH", help="the recording of `ksight record` (default: the "
                                                  "recorder's default store)")
    add_from(src)
    p.add_argument("--since", type=parse_time, metavar="T", help="start of the range (default: "
                                                                 "the first sample)")
    p.add_argument("--until", type=parse_time, metavar="T", help="end of the range (default: "
                                                                 "the last sample)")
    p.add_argument("-a", "--area", action="append", metavar="AREA",
                   help="only rules of this area (repeatable)")
    p.add_argument("--areas", metavar="A,B", help="only rules of these areas (comma-separated)")
    p.add_argument("--window", type=_positive, default=60.0, metavar="S",
                   help="length of the judged windows in seconds (default 60)")
    p.add_argument("--exact", action="store_true",
                   help="judge every window at full resolution with every rule (slower; the "
                        "default screens on one sample in ten and refines where a rule fires)")
    p.add_argument("--bundles", metavar="DIR", help="where the recorder's trigger bundles are "
                                                    "(default: next to the recording)")
    p.add_argument("--html", metavar="FILE", help="write one self-contained HTML page (charts, "
                                                  "episodes) instead of text")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also why each finding matters, every action, the rules that could not look")
    add_json(p)


def _areas(args) -> list[str] | None:
    out = list(args.area or [])
    if args.areas:
        out += [a.strip() for a in args.areas.split(",") if a.strip()]
    return out or None


def _store():
    from ..errors import UsageError

    try:
        from ..record import store
    except ImportError:
        raise UsageError("--db: this ksight has no recording store (ksight.record.store, from "
                         "`ksight record`); report on a capture with --from FILE instead") from None
    return store


def _snapshots(args, areas):
    """(snapshot iterator, label, bundle dir, the Recording or None) for --from or --db."""
    import os

    from ..errors import UsageError

    if args.db is None:
        from ..collect.collector import Collector

        col = Collector.open(args.from_)
        if not col.live:  # a capture: its snapshots, through the same plan as check's
            from ..collect.plan import Needs, Plan
            from ..diagnose.engine import load_rules

            needs = [r.needs for r in load_rules(areas)]
            # the charts: meminfo, vmstat, snmp, stat and the processes' RSS
            needs.append(Needs(sources=("meminfo", "vmstat", "snmp", "stat"),
                               processes=("stat", "status")))
            return col.stream(Plan.of(needs)), col.label, args.bundles, None
    store = _store()
    path = args.db
    if path is None:  # neither --db nor --from: the recorder's default file
        try:
            from ..record.recorder import default_db
        except ImportError:
            raise UsageError("give --db PATH (the recording of `ksight record`) or --from "
                             "CAPTURE") from None
        path = default_db()
    if not os.path.exists(path):
        raise UsageError(f"--db {path}: no such recording (start one with `ksight record --db {path}`)")
    rec = store.Recording.open(path)
    from ..record.triggers import bundle_dir_for

    bundles = args.bundles or bundle_dir_for(path, getattr(rec, "meta", None))
    return rec.snapshots(args.since, args.until, lazy=True), path, bundles, rec


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..errors import UsageError
    from ..record.triggers import load_bundles
    from ..views.report import report_view

    areas = _areas(args)
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise UsageError("--until is not after --since")
    if args.html and args.json:
        raise UsageError("give --json or --html, not both")
    render_html = None
    if args.html:
        try:
            from ..render.report_html import render as render_html
        except ImportError:
            raise UsageError("--html: this ksight has no HTML report (ksight.render.report_html); "
                             "use --json or the text report") from None
    snaps, label, bundle_dir, rec = _snapshots(args, areas)
    bundles = load_bundles(bundle_dir) if bundle_dir else []
    span = None
    rng = getattr(rec, "range", None)  # the charts' range, known beforehand (a recording's)
    if rng is not None and (args.html or args.json):
        span = rng(args.since, args.until)
    view = report_view(snaps, areas=areas, window_seconds=args.window, since=args.since,
                       until=args.until, bundles=bundles, source=label, bundle_dir=bundle_dir,
                       charts=bool(args.html or args.json), exact=args.exact, span=span,
                       recording=rec)
    skipped = getattr(rec, "skipped", 0)
    if skipped:  # torn or undecodable rows: the store skips them; the report says so
        errs = list(getattr(rec, "errors", []))[:3]
        note = (f"{skipped} sample(s) of the recording could not be read and were left out"
                + (f": {'; '.join(errs)}" if errs else ""))
        view.episode_report.notes.append(note)
        view = dataclasses.replace(view, notes=view.notes + (note,))
    if render_html is not None:
        try:
            render_html(view, args.html)  # created readable by its owner only
        except OSError as exc:
            raise UsageError(f"--html {args.html}: {exc.strerror or exc}") from None
    elif args.json:
        from ..render.report_text import report_json
        from .common import print_json

        print_json(report_json(view))
    else:
        from ..render.report_text import render

        render(view, verbose=args.verbose)
    return view.episode_report.exit_status()
