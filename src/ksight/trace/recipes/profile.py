"""profile: where the CPUs spend their time, sampled with perf (kernel and user stacks)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .base import Recipe, RecipeResult


@dataclass(frozen=True)
class Hot:
    function: str
    samples: int                  # samples with this function on top (self time)


@dataclass(frozen=True, kw_only=True)
class ProfileResult(RecipeResult):
    hottest: tuple[Hot, ...]
    folded: dict[str, int]        # 'comm;outer;...;inner' -> samples (the 2000 most frequent)


class Profile(Recipe):
    name = "profile"
    question = "where the CPUs spend their time (sampling, kernel and user stacks)"
    overhead = ("low: 99 samples per second per CPU with frame-pointer stacks (about 1% of one "
                "CPU), plus `perf script` after the run; user stacks of code built without frame "
                "pointers are cut short")
    backends = ("perf",)
    Result = ProfileResult

    def __init__(self, root, freq: int = 99, pid: int | None = None, **opts):
        super().__init__(root, **opts)
        self.backend = "perf"
        self.freq, self.pid = freq, pid
        self.rec = None

    def session(self, seconds=10, **kw):
        from ..perf import Record

        self.rec = Record(seconds=seconds or 10, freq=self.freq, pid=self.pid)
        return PerfSession(self.rec, seconds)

    def result(self, t) -> ProfileResult:
        from ..perf import hottest

        r = self.rec
        return ProfileResult(recipe=self.name, question=self.question, backend="perf",
                             seconds=round(t.duration_s, 3), events=len(r.samples),
                             lost=r.lost or 0, truncated=False, overhead=self.overhead,
                             hottest=tuple(Hot(f, n) for f, n in hottest(r.samples, 25)),
                             folded=dict(r.folded.most_common(2000)))


class PerfSession:
    """Gives a perf Record the same shape as a tracefs session (`with ... as t: t.wait()`)."""

    def __init__(self, rec, seconds):
        self.rec, self.seconds = rec, seconds
        self.started = self.ended = 0.0

    @property
    def duration_s(self):
        return (self.ended or time.monotonic()) - self.started

    def wait(self):
        self.rec.wait()

    def stop(self):
        self.rec.stop()

    def __enter__(self):
        self.rec.__enter__()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.ended = time.monotonic()
        self.rec.__exit__(*exc)
