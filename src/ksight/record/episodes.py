"""Rules over a recorded stretch of time, judged window by window, merged into episodes.

    rep = find_episodes(recording.snapshots(since, until), areas=["memory"], window_seconds=60)
    for e in rep.episodes: e.rule, e.subject, e.start, e.end, e.peak.evidence

The samples stream through once (memory stays flat over a day of samples). They are cut into
windows of `window_seconds` of recorded time, one every `step` seconds; a rule judges a window
as `ksight check` judges its window (per interval inside it: a 5 s burst in a 60 s window is seen
at its peak). Consecutive windows where a rule fires on the same subject make one Episode (its
start and end, how many windows, the worst severity, the finding of its worst window). A reboot
or a change of host in the recording ends the windows there; judging starts again after it.

Speed (issue 13: a day at 1 s, 86,400 samples, in seconds, not minutes). Every rule on every
window at full resolution costs about 0.3 ms per sample here (the CPU area's per-interval model
alone is about 0.2 ms), so judging is done in two passes:
1. coarse: every window is judged by every rule on one sample in `coarse_every` (rates over
   `coarse_every` samples: a burst is averaged over them), and a cheap screen runs at full
   resolution on the counters the rules declare (model/series.py deltas of those counters only;
   for the rules that read /proc/stat without declaring counters, its CPU time columns): a
   window whose per-interval peak of such a counter is over twice that counter's peak over the
   coarse intervals holds a burst the coarse pass may have averaged away;
2. fine: in the windows where a rule fired in the coarse pass, or the screen flagged it, that
   rule is judged again at full resolution; episodes come from this pass (rules judged on the
   window's last sample alone keep their coarse finding: it is the same).
Known limit: a burst that lasts about one coarse interval (5-15 s at the defaults) of a rule
that wants its condition sustained over several intervals can be missed: averaged over the
coarse interval it still peaks at more than half its height, so the screen does not flag it,
and the coarse pass sees one interval where the rule wants two. `exact=True` (`ksight report
--exact`) judges every window at full resolution with every rule (4-5x slower: the figures are
in docs/benchmarks.md). Windows too short to thin (fewer than 7 samples) are judged at full
resolution in one pass.

Rules that could not look are reported like `check` does: never looked in any window ->
`not_evaluated` with the reason; looked in some windows only -> `partial`, with how many windows
and the first reason.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import field, replace
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..diagnose.engine import load_rules, why_cannot_look
from ..diagnose.finding import Finding, NotEvaluated, Subject, severity_rank
from ..diagnose.rule import CannotLook, Context, Rule
from ..model.series import Series, find_break
from ..model.snapshot import Snapshot
from .episode import Episode

DEFAULT_WINDOW_S = 60.0
COARSE_WINDOWS = 10  # windows per coarse block
COARSE_EVERY = 10  # the coarse pass keeps one sample in this many
MIN_COARSE_INTERVALS = 6  # a coarse window keeps at least this many intervals (trends need 5 points)
BURST_RATIO = 2.0  # full-resolution peak / coarse peak of a declared counter that flags a window


@dataclass(frozen=True)
class Partial:
    """A rule that looked in some windows only."""

    rule: str
    windows_not_looked: int
    windows: int
    reason: str  # the first reason it could not look


@dataclass
class EpisodeReport:
    episodes: list[Episode] = field(default_factory=list)
    start: float | None = None  # time of the first sample judged
    end: float | None = None  # time of the last one
    samples: int = 0
    windows: int = 0  # windows judged (coarse pass)
    windows_fine: int = 0  # windows judged again at full resolution
    window_seconds: float = DEFAULT_WINDOW_S
    step: float = DEFAULT_WINDOW_S
    rules_selected: int = 0
    rules_run: int = 0  # rules that looked in at least one window
    not_evaluated: list[NotEvaluated] = field(default_factory=list)
    partial: list[Partial] = field(default_factory=list)
    breaks: list[dict] = field(default_factory=list)  # reboots / host changes in the range
    host: dict = field(default_factory=dict)
    kernel: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> str | None:
        if not self.episodes:
            return None
        return max((e.severity for e in self.episodes), key=severity_rank)

    @property
    def verdict(self) -> str:
        """As `check`: critical / warning (worst episode), ok (every rule looked everywhere and
        nothing at warning or above), incomplete (some rule could not look), unknown (none
        looked, or no sample)."""
        if self.rules_run == 0:
            return "unknown"
        w = self.worst
        if w in ("critical", "warning"):
            return w
        return "ok" if not self.not_evaluated and not self.partial else "incomplete"

    def exit_status(self) -> int:
        return {"critical": 2, "warning": 1, "ok": 0}.get(self.verdict, 3)


def clock(s: Snapshot) -> float | None:
    """The time a sample stands at: wall clock when recorded, else uptime, else monotonic."""
    for t in (s.taken_at, s.uptime_s, s.monotonic):
        if t is not None:
            return t
    return None


def subject_key(sub: Subject | None):
    """What makes two windows' findings one episode: the subject, without the CPU list (a CPU
    rule firing on CPUs 0-1 then on CPU 0 is one episode)."""
    if sub is None:
        return None
    key = replace(sub, cpu=None)
    return None if key == Subject() else key


class _Judge:
    """Runs rules on one window; remembers who could not look, and why."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.looked: dict[str, int] = {}
        self.not_looked: dict[str, list] = {}  # rule -> [count, first reason]

    def run(self, snaps: list[Snapshot], rules: Iterable[Rule], *,
            count: bool = True) -> list[Finding]:
        series = Series(snaps)
        ctx = Context(series)
        out: list[Finding] = []
        for r in rules:
            # as `ksight check` judges a window (diagnose/engine.py): every rule sees the whole
            # window; one that needs no window needs its sources in the last sample only, and
            # may still read the window (close-wait-leak: the sockets kept from read to read)
            reason = why_cannot_look(r.needs, series)
            if reason is None:
                try:
                    got = r.func(ctx, r)
                except CannotLook as c:
                    reason = c.reason
                except Exception as exc:  # one rule's bug must not hide the others
                    tb = traceback.extract_tb(exc.__traceback__)[-1]
                    reason = (f"internal error: {type(exc).__name__}: {exc} at "
                              f"{tb.filename}:{tb.lineno}")
                else:
                    if count:
                        self.looked[r.id] = self.looked.get(r.id, 0) + 1
                    if got:
                        out.extend(got if isinstance(got, list) else [got])
                    continue
            if count:
                n = self.not_looked.setdefault(r.id, [0, reason])
                n[0] += 1
        return out


@dataclass(frozen=True)
class CpuTicks:
    """A /proc/stat time column of all CPUs as a counter (read like model.counters.Counter), for
    the burst screen of rules that judge CPU time without declaring counters."""

    field: str

    source = "stat"

    @property
    def name(self) -> str:
        return f"cpu {self.field}"

    def read(self, parsed) -> int | None:
        return None if parsed is None else getattr(parsed.cpu_total, self.field, None)


CPU_TICKS = tuple(CpuTicks(f) for f in ("system_ticks", "softirq_ticks", "irq_ticks",
                                        "iowait_ticks", "steal_ticks", "user_ticks"))


def _declared(rules: list[Rule]) -> dict[str, list]:
    """rule id -> the counters its burst screen reads: those it declares; for a rule that
    declares none and reads /proc/stat, the CPU time columns."""
    out = {}
    for r in rules:
        if not r.needs.window:
            continue
        if r.needs.counters:
            out[r.id] = list(r.needs.counters)
        elif "stat" in r.needs.sources:
            out[r.id] = list(CPU_TICKS)
    return out


def _screen(rates: dict, lo: int, hi: int, thin: Series, counters: dict[str, list],
            ratio: float) -> set[str]:
    """Rules whose declared counters burst in intervals lo..hi of the block (full resolution:
    `rates`, counter -> per-interval rates from model/series.py) well above their peak over the
    coarse intervals of `thin` (the same window, one sample in N): the coarse pass may have
    averaged the burst away."""
    flagged = set()
    for rid, cs in counters.items():
        for c in cs:
            if rates[c] is None:
                continue
            p = max((r for r in rates[c][lo:hi] if r is not None), default=None)
            if p is None or p <= 0:
                continue
            q = thin.counter(c).peak if thin.intervals else None
            if q is None or p > ratio * max(q.rate, 0.0):
                flagged.add(rid)
                break
    return flagged


def _thin(snaps: list[Snapshot], every: int) -> list[Snapshot]:
    """One snapshot in `every`, always keeping the first and the last."""
    if every <= 1 or len(snaps) <= 2:
        return list(snaps)
    out = snaps[::every]
    if out[-1] is not snaps[-1]:
        out.append(snaps[-1])
    return out


def block_rates(block: list[Snapshot], full: Series, counters: dict[str, list]) -> dict:
    """Per-interval rates (model/series.py) over `block` of every declared counter, None for
    a counter that did not move in the block (counters only go up: one that reads the same at
    both ends did not move inside it, a reset that climbed back to the very same value aside)."""
    rates = {}
    for c in dict.fromkeys(c for cs in counters.values() for c in cs):
        a, b = (c.read(x.get(c.source)) for x in (block[0], block[-1]))
        rates[c] = None if a is not None and a == b else full.counter(c).rates
    return rates


def judge_window(judge: "_Judge", w: list[Snapshot], selected: list[Rule], *, exact: bool = False,
                 coarse_every: int = COARSE_EVERY, counters: dict[str, list] | None = None,
                 rates: dict | None = None, lo: int = 0) -> tuple[list[Finding], bool]:
    """The findings of one window, and whether it was judged at full resolution.

    Coarse first: every rule on one sample in `coarse_every` (each rule counted as looked or
    not there); then at full resolution only the rules that fired and those whose declared counters
    burst in the window (`rates`: per-interval rates of the block holding the window, which
    starts at interval `lo`; None: computed on the window)."""
    every = max(1, min(coarse_every, (len(w) - 1) // MIN_COARSE_INTERVALS))
    if exact or every == 1:  # full resolution from the start: one pass
        return judge.run(w, selected), True
    out: list[Finding] = []
    wthin = _thin(w, every)
    todo = set()
    for f in judge.run(wthin, selected):
        todo.add(f.id)  # every rule sees the window, so a finding is judged again at full resolution
    if counters:
        if rates is None:
            rates, lo = block_rates(w, Series(w), counters), 0
        todo |= _screen(rates, lo, lo + len(w) - 1, Series(wthin), counters, BURST_RATIO)
    if not todo:
        return out, False
    rs = [r for r in selected if r.id in todo]
    return out + judge.run(w, rs, count=False), True


def find_episodes(snapshots: Iterable[Snapshot], *, areas: Iterable[str] | None = None,
                  window_seconds: float = DEFAULT_WINDOW_S, step: float | None = None,
                  rules: Iterable[str] | None = None, exact: bool = False,
                  coarse_windows: int = COARSE_WINDOWS, coarse_every: int = COARSE_EVERY,
                  observe=None, bundles: Iterable[dict] = ()) -> EpisodeReport:
    """Episodes of the selected areas' rules (or the rule ids in `rules`) over `snapshots`
    (in time order; an iterator is read once). `observe(series)` is called with the Series of
    every block of samples (about `coarse_windows` windows; consecutive blocks share their edge
    sample), for views that plot the same range without reading it twice. `bundles`: dicts
    with rule, subject (a Subject or None), at (time) and path, as the watcher writes them: an
    episode gets the path of a bundle captured for its rule and subject during it."""
    part = judge_part(snapshots, areas=areas, window_seconds=window_seconds, step=step,
                      rules=rules, exact=exact, coarse_windows=coarse_windows,
                      coarse_every=coarse_every, observe=observe)
    return finish(part, bundles)


@dataclass
class Part:
    """What judging a stretch of samples found, before the episodes are merged (find_episodes
    judges one stretch; record/report_split.py judges two halves of a range in two processes
    and adds their Parts). `stopped`: the stretch ended at its `stop` (see judge_part)."""

    rep: EpisodeReport
    hits: list
    looked: dict
    not_looked: dict
    rule_ids: list
    exact: bool
    coarse_every: int
    origin: float | None = None  # the time the windows are aligned on (the first sample's)
    stopped: bool = False

    def add(self, other: "Part") -> "Part":
        """This stretch followed by `other` (judged with the same rules and windows)."""
        a, b = self.rep, other.rep
        rep = replace(a, episodes=[], samples=a.samples + b.samples,
                      windows=a.windows + b.windows, windows_fine=a.windows_fine + b.windows_fine,
                      breaks=a.breaks + b.breaks, notes=[],
                      start=a.start if a.start is not None else b.start,
                      end=b.end if b.end is not None else a.end,
                      host=a.host or b.host, kernel=b.kernel or a.kernel,
                      not_evaluated=[], partial=[], rules_run=0)
        looked = dict(self.looked)
        for k, n in other.looked.items():
            looked[k] = looked.get(k, 0) + n
        nl = {k: list(v) for k, v in self.not_looked.items()}
        for k, (n, why) in other.not_looked.items():
            if k in nl:
                nl[k][0] += n
            else:
                nl[k] = [n, why]
        return Part(rep, self.hits + other.hits, looked, nl, self.rule_ids, self.exact,
                    self.coarse_every, self.origin, other.stopped)


def finish(part: Part, bundles: Iterable[dict] = ()) -> EpisodeReport:
    """The episodes and the rules' looked / not looked of a judged Part."""
    rep, exact, coarse_every = part.rep, part.exact, part.coarse_every
    rep.episodes = merge(part.hits, bundles)
    for rid in part.rule_ids:
        n_ok = part.looked.get(rid, 0)
        miss = part.not_looked.get(rid)
        if n_ok == 0:
            reason = miss[1] if miss else "no window to judge (fewer than two samples)"
            rep.not_evaluated.append(NotEvaluated(rid, reason))
        elif miss:
            rep.partial.append(Partial(rid, miss[0], miss[0] + n_ok, miss[1]))
        if n_ok:
            rep.rules_run += 1
    if not exact and rep.windows:
        rep.notes.append(
            f"judged in windows of {rep.window_seconds:g} s every {rep.step:g} s; rules screened "
            f"on one sample in {coarse_every} (and their declared counters at full resolution), "
            f"then {rep.windows_fine} of {rep.windows} windows judged again at full resolution")
    return rep


def judge_part(snapshots: Iterable[Snapshot], *, areas: Iterable[str] | None = None,
               window_seconds: float = DEFAULT_WINDOW_S, step: float | None = None,
               rules: Iterable[str] | None = None, exact: bool = False,
               coarse_windows: int = COARSE_WINDOWS, coarse_every: int = COARSE_EVERY,
               observe=None, origin: float | None = None, stop: float | None = None) -> Part:
    """find_episodes' judging of one stretch, episodes not merged yet. For a stretch that is
    part of a longer range (record/report_split.py): `origin`, the time the range's windows
    are aligned on (its first sample's: the first sample here must then start a block of
    the range, i.e. sit at origin + k * step * coarse_windows); `stop`, a block start where
    this stretch ends: the blocks before it are judged (reading on as far as their windows
    need), the samples at or after it are neither counted nor judged, and the Part says
    `stopped`."""
    if window_seconds <= 0:
        raise ValueError("window_seconds must be > 0")
    step = window_seconds if step is None else step
    if step <= 0:
        raise ValueError("step must be > 0")
    selected = load_rules(areas)
    if rules:
        want = set(rules)
        selected = [r for r in selected if r.id in want]
    rep = EpisodeReport(window_seconds=window_seconds, step=step, rules_selected=len(selected))
    stopped = False
    judge = _Judge(selected)
    counters = {} if exact else _declared(selected)
    hits: list[tuple[int, float, float, Finding]] = []  # (window index, start, end, finding)
    block_span = step * max(1, coarse_windows)

    def judge_block(block: list[Snapshot], base_index: int, t0: float) -> None:
        """Judge the windows of one block (their start times t0 + k*step inside it)."""
        if len(block) < 2:
            return
        full = Series(block)
        if observe is not None:
            observe(full)
        times = [clock(s) for s in block]
        wins = []  # (index, start, end, snaps)
        k = 0
        while True:
            ws = t0 + k * step
            if ws >= times[-1] or (k and ws + 1e-9 >= t0 + block_span):
                break
            we = ws + window_seconds
            w = [s for s, t in zip(block, times) if ws - 1e-6 <= t <= we + 1e-6]
            if len(w) >= 2:
                wins.append((base_index + k, ws, min(we, times[-1]), w))
            k += 1
        if not wins:
            return
        rep.windows += len(wins)
        index = {id(x): i for i, x in enumerate(block)}
        rates = block_rates(block, full, counters)
        for idx, ws, we, w in wins:
            lo = index[id(w[0])]
            found, fine = judge_window(judge, w, selected, exact=exact, coarse_every=coarse_every,
                                       counters=counters, rates=rates, lo=lo)
            rep.windows_fine += fine
            for f in found:
                hits.append((idx, ws, we, f))

    block: list[Snapshot] = []
    seg_start: float | None = None
    block_start: float | None = None
    base_index = 0
    prev: Snapshot | None = None
    for s in snapshots:
        t = clock(s)
        if t is None:
            continue
        if stop is None or t < stop - 1e-6:
            rep.samples += 1
            if rep.start is None:
                rep.start = t
                rep.host = {"hostname": s.host.hostname, "page_size": s.host.page_size,
                            "cpus": s.host.cpus}
            rep.end = t
            rep.kernel = s.host.kernel
        if prev is not None:
            br = find_break(prev, s)
            if br is not None:
                rep.breaks.append({"at": t, "kind": br[0], "reason": br[1]})
                judge_block(block, base_index, block_start)
                base_index += coarse_windows + 1
                block, seg_start, block_start = [], None, None
            elif clock(prev) is not None and t <= clock(prev):
                continue  # out of order or repeated: a recording is in time order
        prev = s
        if seg_start is None:
            seg_start = block_start = t
            if origin is None:
                origin = t
            elif not rep.breaks:  # a later part of a range: its blocks as the range's
                k = int((t - origin + 1e-6) // block_span)
                seg_start = block_start = origin + k * block_span
                base_index = k * max(1, coarse_windows)
        block.append(s)
        if t >= block_start + block_span + window_seconds - step:
            # the block's last window is complete: judge it, keep what the next block's
            # windows need (they start at block_start + block_span)
            judge_block(block, base_index, block_start)
            base_index += max(1, coarse_windows)
            block_start += block_span
            block = [x for x in block if clock(x) >= block_start - 1e-6]
            if block and clock(block[0]) >= block_start + block_span:  # a gap in the recording
                skip = int((clock(block[0]) - block_start) // block_span)
                block_start += skip * block_span
                base_index += skip * max(1, coarse_windows)
            if stop is not None and block_start >= stop - 1e-6:
                stopped = True
                break
    if not stopped:
        judge_block(block, base_index, block_start if block_start is not None else 0.0)
    return Part(rep, hits, judge.looked, judge.not_looked, [r.id for r in selected], exact,
                coarse_every, origin, stopped)


def merge(hits: list[tuple[int, float, float, Finding]],
          bundles: Iterable[dict] = ()) -> list[Episode]:
    """Consecutive windows where a rule fired on the same subject -> one Episode."""
    by: dict[tuple, list] = {}
    for idx, ws, we, f in sorted(hits, key=lambda h: h[0]):
        by.setdefault((f.id, subject_key(f.subject)), []).append((idx, ws, we, f))
    out: list[Episode] = []
    for (_rid, _key), rows in by.items():
        run: list = []
        for row in rows:
            if run and row[0] > run[-1][0] + 1:
                out.append(_episode(run))
                run = []
            if run and row[0] == run[-1][0]:  # the same window twice (overlapping blocks)
                if severity_rank(row[3].severity) > severity_rank(run[-1][3].severity):
                    run[-1] = row
                continue
            run.append(row)
        if run:
            out.append(_episode(run))
    bl = list(bundles)
    if bl:
        out = [_with_bundle(e, bl) for e in out]
    out.sort(key=lambda e: (e.start, -severity_rank(e.severity), e.rule))
    return out


def _episode(run: list) -> Episode:
    worst = max(run, key=lambda r: severity_rank(r[3].severity))  # the first of equals
    f = worst[3]
    sub = None if f.subject == Subject() else f.subject  # no field set: the whole machine
    return Episode(rule=f.id, area=f.area, severity=f.severity, subject=sub,
                   start=run[0][1], end=run[-1][2], windows=len(run), peak=f, peak_at=worst[2])


def _with_bundle(e: Episode, bundles: list[dict]) -> Episode:
    key = subject_key(e.subject)
    for b in bundles:
        if b.get("rule") != e.rule or subject_key(b.get("subject")) != key:
            continue
        at = b.get("at")
        if at is not None and e.start - 60 <= at <= e.end + 60:
            return replace(e, bundle=b.get("path"))
    return e


__all__ = ["find_episodes", "judge_part", "finish", "Part", "merge", "EpisodeReport", "Partial", "clock", "subject_key",
           "DEFAULT_WINDOW_S"]
