"""How a rule is declared, and the Context it reads.

A rule is one diagnosis: a function decorated with @rule that reads only the snapshot model
(through Context) and returns a Finding, a list of them, or None. It declares what it cannot
look without (typed needs: sources, counters by name, sysctls, entity tables, a window) so the
collector reads just that and the engine can say why a rule did not look. Its thresholds are
declared with it, each with its unit and the reason for its value, so `ksight check --rules`,
the docs and the tests all see the same numbers:

    PSWPIN = vm("pswpin")
    @rule("pagecache.swap-io", title="Swap I/O", counters=(PSWPIN,),
          thresholds={"warn_pages_per_s": Threshold(10, "pages/s", "...why...")})
    def swap_io(ctx, r):
        peak = ctx.counter(PSWPIN).peak      # judged per interval: a burst is seen at its peak

A rule that finds out while running that it cannot judge raises `ctx.cannot_look(reason)`;
returning None means "looked and found nothing".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Any

from ..collect.plan import Needs
from ..model.counters import CgroupCounter, Counter
from ..model.series import CounterSeries, Peak, Series
from ..model.snapshot import Snapshot
from ..sources import SYSTEM
from .finding import Action, Evidence, Finding, Subject


class CannotLook(Exception):
    """Raised by a rule (ctx.cannot_look) that found it has nothing to judge with."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Threshold:
    value: float
    unit: str
    why: str


@dataclass(frozen=True)
class Rule:
    id: str
    area: str
    title: str
    needs: Needs
    thresholds: dict[str, Threshold]
    func: Callable[["Context", "Rule"], Any]
    doc: str = ""

    @property
    def window(self) -> bool:
        return self.needs.window

    def t(self, name: str) -> float:
        return self.thresholds[name].value

    def finding(self, severity: str, evidence: Iterable[Evidence], explanation: str,
                actions: Iterable[Action] = (), *, subject: Subject | None = None,
                title: str | None = None) -> Finding:
        # a sysctl action whose recommendation is the current value is no advice: drop it
        acts = tuple(a for a in actions if not (
            a.kind == "sysctl" and a.current is not None and a.recommended is not None
            and " ".join(a.current.split()) == " ".join(str(a.recommended).split())))
        # evidence whose value this kernel does not provide is left out: values are numbers
        # (or setting strings), never null (docs/check-json.md)
        evidence = tuple(e for e in evidence if e.value is not None)
        return Finding(id=self.id, area=self.area, severity=severity, title=title or self.title,
                       evidence=evidence, explanation=explanation,
                       actions=acts, subject=subject)


RULES: dict[str, Rule] = {}


def rule(id: str, *, title: str, needs: tuple[str, ...] = (), uses: tuple[str, ...] = (),
         counters: tuple[Counter, ...] = (), sysctls: tuple[str, ...] = (),
         processes: tuple[str, ...] = (), smaps_top: int = 0, sockets: bool = False,
         cgroup_files: tuple[str, ...] = (), window: bool = True, min_seconds: float = 0.0,
         thresholds: dict[str, Threshold] | None = None, uses_when: tuple = ()):
    """Register a rule function under a stable id ('area.name') with its typed needs."""
    area = id.split(".", 1)[0]
    bad = [s for s in tuple(needs) + tuple(uses) + tuple(w.source for w in uses_when)
           if s not in SYSTEM]
    if bad:
        raise ValueError(f"rule {id}: unknown source(s) {bad}")
    spec = Needs(sources=tuple(needs), uses=tuple(uses), counters=tuple(counters),
                 sysctls=tuple(sysctls), processes=tuple(processes), smaps_top=smaps_top,
                 sockets=sockets, cgroup_files=tuple(cgroup_files), window=window,
                 min_seconds=min_seconds, uses_when=tuple(uses_when))

    def deco(func):
        if id in RULES:
            raise ValueError(f"rule {id} declared twice")
        RULES[id] = Rule(id, area, title, spec, dict(thresholds or {}), func,
                         (func.__doc__ or "").strip())
        return func

    return deco


def source_file(source: str) -> str:
    """The kernel file behind a source name, for citing evidence ('/proc/vmstat')."""
    s = SYSTEM.get(source)
    if s and s.doc.startswith("/"):
        return s.doc.split(":", 1)[0]
    return source


class Context:
    """What a rule sees: a Series (snapshots of one boot, per-interval deltas) and helpers that
    turn numbers into cited evidence."""

    def __init__(self, series: Series):
        self.series = series
        self._used: dict[str, CounterSeries] = {}

    @property
    def snapshots(self) -> tuple[Snapshot, ...]:
        return self.series.snapshots

    @property
    def first(self) -> Snapshot:
        return self.series.first

    @property
    def last(self) -> Snapshot:
        return self.series.last

    @property
    def seconds(self) -> float:
        return self.series.seconds

    @property
    def page_size(self) -> int:
        return self.last.host.page_size

    def get(self, source: str) -> Any:
        return self.last.get(source)

    # ---- counters: per interval, resets flagged in the series -------------------------------
    def counter(self, c: Counter) -> CounterSeries:
        cs = self.series.counter(c)
        self._used.setdefault(f"{c.source}:{c.name}", cs)
        return cs

    def derived(self, name: str, fn: Callable[[Snapshot], float | None]) -> CounterSeries:
        cs = self.series.derived_counter(name, fn)
        self._used.setdefault(name, cs)
        return cs

    def rate(self, c: Counter) -> float | None:
        """Mean rate over the window (per second)."""
        return self.counter(c).mean_rate

    def peak(self, c: Counter) -> Peak | None:
        """The interval with the highest rate."""
        return self.counter(c).peak

    def peak_rate(self, c: Counter) -> float | None:
        return self.counter(c).peak_rate

    def delta(self, c: Counter) -> float | None:
        """The total change over the window (resets excluded)."""
        return self.counter(c).total

    def cgroup_counters(self, c: CgroupCounter) -> dict:
        """(path, id) -> CounterSeries of a memory.stat key, for groups seen twice or more."""
        return self.series.entity_counters("cgroups", c)

    def resets(self) -> list[str]:
        return [name for name, cs in self._used.items() if cs.resets]

    # ---- settings ---------------------------------------------------------------------------
    def sysctl(self, name: str) -> int | None:
        s = self.get("sysctl")
        return s.int(name) if s is not None else None

    def sysctl_text(self, name: str) -> str | None:
        s = self.get("sysctl")
        return s.text(name) if s is not None else None

    @staticmethod
    def cannot_look(reason: str) -> CannotLook:
        """`raise ctx.cannot_look("...")`: the rule could not judge; the report says why."""
        return CannotLook(reason)

    # evidence helpers: every number carries its unit and where it came from
    def ev(self, name: str, value: Any, unit: str, source: str, threshold: Any = None,
           note: str | None = None) -> Evidence:
        if isinstance(value, float):
            value = round(value, 3)
        return Evidence(name, value, unit, source_file(source) if not source.startswith("/") else source,
                        threshold, note)

    def peak_note(self, p: Peak | None, mean: float | None = None, unit: str = "/s") -> str | None:
        """'peak in interval 3 of 9 (1.0 s, ending 4.0 s in); mean 12.5/s over the window'."""
        if p is None:
            return None
        n = self.series.intervals
        where = f"peak in interval {p.interval + 1} of {n}" if n > 1 else "over the window"
        when = f" ({p.seconds:.3g} s, ending {p.at:.3g} s in)" if p.at is not None and n > 1 else ""
        avg = f"; mean {mean:,.1f}{unit} over {self.seconds:.3g} s" if mean is not None and n > 1 else ""
        return where + when + avg
