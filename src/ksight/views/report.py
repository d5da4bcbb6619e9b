"""`ksight report`: the episodes of a recorded range and the time series a page plots, as one
views/report_data.ReportView (the text, JSON and HTML renderers all read that one type).

    view = report_view(recording.snapshots(since, until), areas=None, window_seconds=60)
    view.episodes            # (Episode, ...): rule, subject, start, end, peak evidence, bundle
    view.episode_report      # record.episodes.EpisodeReport: verdict, rules run, partial, breaks
    view.charts              # (ReportChart(id, title, unit, series=(ReportSeries, ...)), ...)

The samples stream through once: the episodes are judged and the charts filled from the same
blocks of samples (record.episodes.find_episodes(observe=...) feeds
views/report_series.ChartBuilder). That module says what each chart plots and how a long range
is reduced: per time bucket each series keeps its lowest and highest sample, so a one-second
peak inside a day is still a point of its line (nothing is averaged away).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from contextlib import contextmanager

from ..record.episodes import DEFAULT_WINDOW_S, clock, find_episodes
from .report_data import ReportView
from .report_series import MAX_BUCKETS, ChartBuilder

TOP_PROCESSES = 5


class _WallClock:
    """Whether the samples have a wall clock (the first one with any clock decides, as
    ChartBuilder decides), for a report without charts."""

    def __init__(self):
        self.wall: bool | None = None

    def observe(self, series) -> None:
        if self.wall is None and series.snapshots:
            self.wall = series.snapshots[0].taken_at is not None


def report_view(snapshots: Iterable, *, areas: Iterable[str] | None = None,
                window_seconds: float = DEFAULT_WINDOW_S, step: float | None = None,
                since: float | None = None, until: float | None = None,
                bundles: Iterable[dict] = (), source: str | None = None,
                bundle_dir: str | None = None, charts: bool = True, exact: bool = False,
                max_buckets: int = MAX_BUCKETS, top: int = TOP_PROCESSES,
                span: tuple[float, float] | None = None, recording=None,
                jobs: int | None = None) -> ReportView:
    """Episodes (and, with charts=True, the plotted series) of the samples between since and
    until (Unix seconds; None: no bound). span: the times of the first and last sample in
    that range when known beforehand (Recording.range(since, until)): the charts' buckets get
    their final width from the start (same charts, less work).

    recording: the record.store.Recording `snapshots` come from (its snapshots(since, until)):
    a long range is then judged in two processes when the machine has a second CPU
    (record/report_split.py: the same episodes and charts; `jobs=1` or KSIGHT_REPORT_JOBS=1:
    one process), `snapshots` left unread."""
    with _few_collections():
        rangef = getattr(recording, "range", None)  # a Recording (a stand-in may have none)
        if rangef is not None and getattr(recording, "path", None):
            from ..record import report_split

            rng = rangef(since, until)
            if report_split.wanted(rng, window_seconds, step, jobs):
                view = report_split.report_view_split(
                    recording, since=since, until=until, areas=areas,
                    window_seconds=window_seconds, step=step, bundles=bundles, source=source,
                    bundle_dir=bundle_dir, charts=charts, exact=exact, max_buckets=max_buckets,
                    top=top, span=rng)
                if view is not None:
                    return view
        return _report_view(snapshots, areas=areas, window_seconds=window_seconds, step=step,
                            since=since, until=until, bundles=bundles, source=source,
                            bundle_dir=bundle_dir, charts=charts, exact=exact,
                            max_buckets=max_buckets, top=top, span=span)


@contextmanager
def _few_collections():
    """Python's cycle collector runs every 700 allocations and, now and then, walks every live
    object: a day of samples decoded allocates ~10^8 short-lived (acyclic) objects, so ~10 %
    of the report went there. Fewer young collections while the report runs; the thresholds
    are restored after it. 200,000 rather than 20,000: 4 % less CPU over 4 hours of the
    synthetic day (31 collections instead of 53, fewer of them walking the older generations),
    the same peak RSS (46 MB), the same 227 objects freed by the collector."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], 200_000), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _report_view(snapshots, *, areas, window_seconds, step, since, until, bundles, source,
                 bundle_dir, charts, exact, max_buckets, top, span) -> ReportView:
    def ranged():
        for s in snapshots:
            t = clock(s)
            if t is None or (since is not None and t < since):
                continue
            if until is not None and t > until:
                break
            yield s

    builder = ChartBuilder(top=top, max_buckets=max_buckets,
                           span=None if span is None else span[1] - span[0]) if charts else None
    wall = _WallClock()
    observe = builder.observe if builder is not None else wall.observe
    rep = find_episodes(ranged(), areas=areas, window_seconds=window_seconds, step=step,
                        observe=observe, bundles=bundles, exact=exact)
    return _assemble(rep, builder, wall.wall, since=since, until=until, source=source,
                     bundle_dir=bundle_dir)


def _assemble(rep, builder, wall: bool | None, *, since, until, source, bundle_dir) -> ReportView:
    """The ReportView of an EpisodeReport and a ChartBuilder (None: no charts; `wall` then says
    whether the samples had a wall clock)."""
    cs = builder.result() if builder is not None else None
    host = rep.host.get("hostname") if rep.host else None
    return ReportView(
        host=(cs.host if cs is not None else None) or host,
        kernel=(cs.kernel if cs is not None else None) or rep.kernel,
        # the range asked for when there is one (the page's time axis), else the samples'
        start=since if since is not None else rep.start,
        end=until if until is not None else rep.end,
        charts=cs.charts if cs is not None else (),
        episodes=tuple(rep.episodes),
        not_evaluated=tuple(rep.not_evaluated),
        notes=tuple(rep.notes) + (cs.notes if cs is not None else ()),
        wall_clock=cs.wall_clock if cs is not None and cs.snapshots else wall is not False,
        snapshots=rep.samples,
        episode_report=rep, source=source, since=since, until=until, bundle_dir=bundle_dir)


__all__ = ["report_view", "ReportView", "TOP_PROCESSES"]
