"""`ksight report` over a long recorded range in two processes (issue 13: a day at 1 s in
seconds): the range is cut at a block boundary of the episode finder near its middle; this
process judges (and charts) the first half, a forked child the second, each decoding its own
half from the recording file; the halves' judged windows and charts are then added.

Why the result is the one judging the whole range in one pass gives (tests/record/
test_report_split.py compares them): the episode finder judges windows inside blocks of
`step * coarse_windows` seconds aligned on the range's first sample, and no rule sees past its
window; the second half starts its blocks on that same alignment (record.episodes.judge_part
`origin`) and the first half stops at the cut (`stop`, reading on as far as its last windows
need). The charts' time buckets share the first sample's time and the range's span; the second
half starts from the last sample the first half drew (its intervals begin there, its process
table seeds the lines), and the buckets are added (lowest and highest kept). Episodes are merged
from both halves' windows in one pass, so an episode across the cut is one episode.

When the halves cannot be added exactly, the caller judges the range in one process: a reboot
or host change anywhere in it (windows are aligned on each boot's first sample), a range that
does not start where the recording's range says, a child that failed. The second process costs
the decoding of at most one keyframe interval twice, and a fork.

    view = report_view_split(rec, since=..., until=..., ...)   # None: judge it in one pass
"""

from __future__ import annotations

import os
import pickle
import signal

from ..model.series import find_break
from .episodes import COARSE_WINDOWS, DEFAULT_WINDOW_S, clock, finish, judge_part

MIN_SPAN_S = 2 * 3600.0  # shorter ranges are judged in one process (a fork is not worth it)


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def wanted(span: tuple[float, float] | None, window_seconds: float, step: float | None,
           jobs: int | None = None) -> bool:
    """Whether to cut this range in two: a long one, on a machine with a second CPU for us,
    windows that overlap or touch (step <= window), unless KSIGHT_REPORT_JOBS=1 says not to."""
    if jobs is None:
        env = os.environ.get("KSIGHT_REPORT_JOBS", "")
        jobs = int(env) if env.isdigit() else cpus()
    step = window_seconds if step is None else step
    return (jobs >= 2 and span is not None and span[1] - span[0] >= MIN_SPAN_S
            and 0 < step <= window_seconds and hasattr(os, "fork"))


def _ranged(snapshots, since, until):
    for s in snapshots:
        t = clock(s)
        if t is None or (since is not None and t < since):
            continue
        if until is not None and t > until:
            break
        yield s


def _half(rec, *, first: bool, cut: float, t0: float, span: tuple[float, float],
          since, until, areas, window_seconds, step, exact, charts, top, max_buckets):
    """(Part, finished ChartBuilder or None, a break before the cut, skipped, errors)."""
    from ..views.report_series import ChartBuilder

    builder = (ChartBuilder(top=top, max_buckets=max_buckets, span=span[1] - span[0], t0=t0,
                            continued=not first) if charts else None)
    seen_break = []
    if first:
        snaps = _ranged(rec.snapshots(since, until, lazy=True), since, until)

        def observe(series):
            if builder is not None:  # this half draws up to the cut, the other after it
                builder.feed([x for x in series.snapshots if clock(x) <= cut + 1e-6])
        part = judge_part(snaps, areas=areas, window_seconds=window_seconds, step=step,
                          exact=exact, observe=observe, stop=cut)
    else:
        # from the last sample at or before the cut (drawn by the first half: the intervals
        # after it start there), judging from the cut on
        row = rec.con.execute("SELECT max(t) FROM frames WHERE t <= ?", (cut,)).fetchone()
        start = row[0] if row and row[0] is not None else cut
        if since is not None:
            start = max(start, since)

        def judged():
            prev = None
            for s in _ranged(rec.snapshots(start, until, lazy=True), since, until):
                t = clock(s)
                if t < cut - 1e-6:
                    if builder is not None:
                        builder.feed([s])
                    prev = s
                    continue
                if prev is not None:
                    if find_break(prev, s) is not None:
                        seen_break.append(t)
                    prev = None
                yield s

        part = judge_part(judged(), areas=areas, window_seconds=window_seconds, step=step,
                          exact=exact, observe=builder.observe if builder else None, origin=t0)
    if builder is not None:
        builder.finish()
    return part, builder, bool(seen_break), rec.skipped, list(rec.errors)


def _warm(rec, since, until, areas) -> None:
    """Load the rules and build the decoder's codecs of the sources a report reads (the first
    sample's), so that the forked child inherits them instead of building them again."""
    from .episodes import load_rules

    load_rules(areas)
    for s in rec.snapshots(since, until, lazy=True):
        for name in s.sources:
            s.get(name)
        break


def report_view_split(rec, *, since=None, until=None, areas=None,
                      window_seconds: float = DEFAULT_WINDOW_S, step: float | None = None,
                      bundles=(), source=None, bundle_dir=None, charts: bool = True,
                      exact: bool = False, max_buckets: int, top: int,
                      span: tuple[float, float] | None = None):
    """The ReportView of views.report.report_view over [since, until] of the Recording `rec`,
    judged in two processes; None when the halves could not be added exactly (see the module
    doc): the caller then judges the range in one pass."""
    span = span if span is not None else rec.range(since, until)
    if span is None:
        return None
    stepv = window_seconds if step is None else step
    block = stepv * max(1, COARSE_WINDOWS)
    t0 = span[0]
    k = int(((span[1] - span[0]) / 2) // block)
    if k < 1:
        return None
    cut = t0 + k * block
    kw = dict(cut=cut, t0=t0, span=span, since=since, until=until, areas=areas,
              window_seconds=window_seconds, step=step, exact=exact, charts=charts, top=top,
              max_buckets=max_buckets)
    skipped0, errors0 = rec.skipped, list(rec.errors)
    view = _split(rec, kw, cut, t0, bundles=bundles, since=since, until=until, source=source,
                  bundle_dir=bundle_dir)
    if view is None:  # judged again in one pass: what this one skipped is counted there
        rec.skipped, rec.errors[:] = skipped0, errors0
    return view


def _split(rec, kw, cut, t0, *, bundles, since, until, source, bundle_dir):
    from ..views.report import _assemble
    from .store import Recording

    _warm(rec, since, until, kw["areas"])  # what both processes need, done once before the fork
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the second half, handed back pickled; never returns
        code = 0
        try:
            os.close(r)
            try:
                with Recording.open(rec.path) as own:
                    got = ("ok", _half(own, first=False, **kw))
            except BaseException as exc:  # noqa: BLE001  (reported to the parent, which falls back)
                got = ("error", f"{type(exc).__name__}: {exc}")
            data = pickle.dumps(got, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        mine = _half(rec, first=True, **kw)
        with os.fdopen(r, "rb") as f:
            r = -1
            data = f.read()
    except BaseException:  # this half failed or was interrupted: the child's half is not wanted
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        if r != -1:
            os.close(r)
        os.waitpid(pid, 0)  # the child is always reaped
    try:
        status, theirs = pickle.loads(data)
    except Exception:  # noqa: BLE001  (a child that died: judge in one pass)
        return None
    if status != "ok":
        return None
    p1, b1, _, _, _ = mine
    p2, b2, brk, skipped, errors = theirs
    if (brk or not p1.stopped or p1.origin is None or abs(p1.origin - t0) > 1e-6
            or p1.rep.breaks or p2.rep.breaks
            or (b1 is not None and (b1._b.breaks or b2._b.breaks))):
        return None
    rec.skipped += skipped
    rec.errors.extend(errors[:max(0, 20 - len(rec.errors))])
    rep = finish(p1.add(p2), bundles)
    if b1 is not None:
        b1.take(b2)
    rep.notes.append("judged in two processes (the range cut at "
                     f"{cut - t0:g} s from its start; the same episodes and charts as in one)")
    return _assemble(rep, b1, None, since=since, until=until, source=source,
                     bundle_dir=bundle_dir)


__all__ = ["report_view_split", "wanted", "cpus", "MIN_SPAN_S"]
