"""The one collector: every command gets its snapshots here, live or from a capture.

`check`, `show`, `sar`, `pagecache` (and the commands to come) ask a Collector for what a Plan
says, and never branch on "live or --from" themselves, nor run their own sampling loops:

    col = Collector.open(args.from_)               # live machine, or a capture
    snaps = col.window(plan, seconds=3, step=1)     # check: a window of snapshots
    for snap in col.stream(plan, interval=1, count=5): ...   # sar: one snapshot at a time
    snap = col.one(plan)                            # show, pagecache: one look

Live, the clock is CLOCK_MONOTONIC and samples are taken on a fixed schedule (no drift); a
capture replays its snapshots in order through the same parsers, with the manifest's context
(page size, USER_HZ, the reasons sources were unavailable when it was taken). Capturing
(`ksight capture`) is a live collector reading through a recording root.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

from ..errors import UsageError
from ..fs import LiveRoot, RecordingRoot, Root
from ..model.snapshot import HostInfo, Missing, Snapshot
from .plan import Plan
from .snapshot import take


class Collector:
    live: bool = True
    MAX_KEPT = 240  # snapshots a window holds at most (memory stays flat on long windows)
    step_used: float | None = None  # the step between the snapshots a window ended with

    def __init__(self, root: Root | None = None):
        self.root = root or LiveRoot()
        self.live = self.root.live
        self.label = "live" if self.live else self.root.label
        self._host: HostInfo | None = None

    @staticmethod
    def open(source: str | None) -> "Collector":
        """The live machine when source is None, else the capture at `source`, or the recording
        `--db PATH` named (cli.common.RecordingSpec: a path with --at/--since/--until)."""
        if source is not None and hasattr(source, "times"):
            return RecordingCollector(source.path, *source.times())
        if source:
            return CaptureCollector(source)
        return Collector()

    # ---- live ------------------------------------------------------------------------------
    def sample(self, plan: Plan) -> Snapshot:
        """One snapshot now. The host (name, kernel, boot) does not change under a live run:
        it is read once."""
        snap = take(self.root, plan=plan, host=self._host)
        if self._host is None and self.live:
            self._host = snap.host
        return snap

    def window(self, plan: Plan, *, seconds: float, step: float,
               progress: Callable[[str], None] | None = None) -> list[Snapshot]:
        """Snapshots every `step` seconds for `seconds` (at least two). Ctrl-C ends the window
        early and keeps what was taken, if that is two snapshots or more.

        Memory stays flat on long windows: past MAX_KEPT snapshots every other one is dropped and
        the step doubles from then on (`self.step_used` says the step the series ends with), so a
        day-long window holds at most MAX_KEPT snapshots; peaks are then judged over the longer
        intervals, and the report says so."""
        if step <= 0 or seconds <= 0:
            raise UsageError("the window and its step must be longer than 0 s")
        n = max(int(round(seconds / step)), 1)
        if progress:
            progress(f"Sampling the kernel for {seconds:g} s ({n + 1} snapshots)... "
                     "Ctrl-C to stop early.")
        snaps = [self.sample(plan)]
        start = time.monotonic()
        k, stride = 0, 1  # snapshots are at multiples of `stride` base steps
        try:
            while k + stride <= n:
                k += stride
                delay = start + k * step - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                snaps.append(self.sample(plan))
                if len(snaps) > self.MAX_KEPT:
                    if (k // stride) % 2:  # the newest is at an odd multiple: not on the new grid
                        snaps.pop()
                        k -= stride
                    snaps = snaps[::2]
                    stride *= 2
            if k < n:  # the doubled grid stopped short of the end: one last look at the end
                delay = start + n * step - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                snaps.append(self.sample(plan))
        except KeyboardInterrupt:
            if len(snaps) < 2:
                raise
            if progress:
                progress("interrupted; using the window so far")
        self.step_used = step * stride
        return snaps
    @staticmethod
    def _ticks(interval: float, count: int | None) -> Iterator[int]:
        """0 now, then 1, 2, ... every `interval` seconds on a fixed schedule (no drift), `count`
        more after the first (None: no end)."""
        yield 0
        n = 0
        next_t = time.monotonic()
        while count is None or n < count:
            next_t += interval
            time.sleep(max(0.0, next_t - time.monotonic()))
            n += 1
            yield n

    def stream(self, plan: Plan, *, interval: float, count: int | None) -> Iterator[Snapshot]:
        """The first snapshot now, then one every `interval` seconds, `count` more (None:
        until Ctrl-C, which ends the stream quietly)."""
        try:
            for _ in self._ticks(interval, count):
                yield self.sample(plan)
        except KeyboardInterrupt:
            return

    def record(self, plan: Plan, *, interval: float, count: int | None):
        """Like stream, for captures: yields (snapshot, RecordingRoot that holds exactly the
        bytes it read). The host is read again each time (its files belong in every snapshot of
        a capture). Ctrl-C is left to the caller, which must say the capture was cut short."""
        for _ in self._ticks(interval, count):
            rec = RecordingRoot(self.root)
            yield take(rec, plan=plan), rec

    def one(self, plan: Plan, index: int = -1) -> Snapshot:
        return self.sample(plan)

    def count(self) -> int | None:
        return None

    def add_owners(self, snaps: list[Snapshot], states: tuple[str, ...]) -> list[Snapshot]:
        """The snapshots with the owners of their sockets in `states`, looked up now, for a
        window sampled with Plan.owners_later (collect.sockets.add_owners). A capture or a
        recording is what it is: its snapshots come back as they are."""
        if not self.live:
            return list(snaps)
        from .sockets import add_owners

        return add_owners(self.root, snaps, states)


class CaptureCollector(Collector):
    """Snapshots replayed from a capture (directory or archive), in order."""

    live = False

    def __init__(self, spec: str):
        from ..fs.bundle import open_bundle  # only with --from: the live path skips it

        self.capture = open_bundle(spec)
        self.root = None
        self.label = spec
        self._host = None

    def _take(self, i: int, plan: Plan) -> Snapshot:
        cap = self.capture
        meta = cap.metas[i]
        known = [Missing(m["source"], m["reason"]) for m in meta.get("unavailable", [])]
        return take(cap.roots[i], plan=plan, host_hint=cap.host_hint,
                    taken_at=meta.get("taken_at"), known_unavailable=known)

    def count(self) -> int:
        return len(self.capture.roots)

    def sample(self, plan: Plan) -> Snapshot:
        return self._take(self.count() - 1, plan)

    def window(self, plan: Plan, *, seconds: float | None = None, step: float | None = None,
               progress=None) -> list[Snapshot]:
        return [self._take(i, plan) for i in range(self.count())]

    def stream(self, plan: Plan, *, interval: float | None = None,
               count: int | None = None) -> Iterator[Snapshot]:
        for i in range(self.count()):
            yield self._take(i, plan)

    def one(self, plan: Plan, index: int = -1) -> Snapshot:
        try:
            i = range(self.count())[index]
        except IndexError:
            raise UsageError(f"snapshot {index}: the capture has {self.count()} snapshot(s)") from None
        return self._take(i, plan)


class RecordingCollector(Collector):
    """Snapshots decoded from a recording of `ksight record` (record/store.py), over a window:
    [since, until]; with only `at`, the window that ends at `at` (a `seconds` long one for check,
    the snapshot at `at` for one-look views); with neither, the end of the recording."""

    live = False

    def __init__(self, path: str | None, at: float | None = None, since: float | None = None,
                 until: float | None = None):
        if not path:
            raise UsageError("--at/--since/--until read a recording: give it with --db PATH")
        if at is not None and (since is not None or until is not None):
            raise UsageError("--at or --since/--until: give one")
        if since is not None and until is not None and until < since:
            raise UsageError("--until is before --since")
        from ..record.store import Recording

        self.recording = Recording.open(path)
        self.root = None
        self.label = path
        self._host = None
        self.at, self.since, self.until = at, since, until
        span = self.recording.range()
        if span is None:
            raise UsageError(f"{path}: the recording holds no samples yet")
        self.span = span

    def _describe(self) -> str:
        from datetime import datetime

        a, b = (datetime.fromtimestamp(t).isoformat(timespec="seconds") for t in self.span)
        return f"the recording covers {a} to {b}"

    def _bounds(self, seconds: float | None) -> tuple[float | None, float | None]:
        if self.at is not None:
            return (self.at - seconds if seconds else self.at), self.at
        if self.since is None and self.until is None and seconds:
            return self.span[1] - seconds, None  # the last `seconds` of the recording
        return self.since, self.until

    def _snaps(self, lo, hi) -> list[Snapshot]:
        out: list[Snapshot] = []
        n = self.recording.count(lo, hi)
        keys = self.recording.count(lo, hi, keyframes_only=True)
        # a long window: keyframes alone when they are more than MAX_KEPT (they decode alone:
        # ~1/60 of the decoding), then every other one until the window fits
        only_keys = keys > self.MAX_KEPT
        if only_keys:
            n = keys
        stride = 1
        while n / stride > self.MAX_KEPT:
            stride *= 2
        for i, s in enumerate(self.recording.snapshots(lo, hi, keyframes_only=only_keys)):
            if i % stride == 0:
                out.append(s)
        if (stride > 1 or only_keys) and len(out) >= 2 and out[0].taken_at and out[1].taken_at:
            self.step_used = out[1].taken_at - out[0].taken_at
        if not out:
            raise UsageError(f"no samples in that window: {self._describe()}")
        return out

    def count(self) -> int:
        return self.recording.count(*self._bounds(None))

    def sample(self, plan: Plan) -> Snapshot:
        return self.one(plan)

    def window(self, plan: Plan, *, seconds: float | None = None, step: float | None = None,
               progress=None) -> list[Snapshot]:
        snaps = self._snaps(*self._bounds(seconds))
        if len(snaps) < 2 and self.at is not None and seconds:  # too sparse: one more before
            snaps = self._snaps(self.at - 2 * seconds - 60, self.at)[-2:]
        return snaps

    def stream(self, plan: Plan, *, interval: float | None = None,
               count: int | None = None) -> Iterator[Snapshot]:
        yield from self._snaps(*self._bounds(None))

    def one(self, plan: Plan, index: int = -1) -> Snapshot:
        t = self.at if self.at is not None else (self.until if self.until is not None else self.span[1])
        snap = self.recording.at(t)
        if snap is None:
            raise UsageError(f"no sample at or before that time: {self._describe()}")
        return snap


def stderr_progress(quiet: bool) -> Callable[[str], None] | None:
    """Progress lines on stderr when a person watches (a terminal, and not --json)."""
    if quiet or not sys.stderr.isatty():
        return None
    return lambda msg: print(msg, file=sys.stderr)


__all__ = ["Collector", "CaptureCollector", "RecordingCollector", "stderr_progress"]
