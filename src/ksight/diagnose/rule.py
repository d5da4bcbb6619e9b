"""How a rule is declared, and the Context it reads.

A rule is one diagnosis: a function decorated with @rule that reads only the snapshot model
(through Context) and returns a Finding, a list of them, or None. Its thresholds are declared
with the rule, each with its unit and the reason for its value, so `ksight check --explain`,
the docs and the tests all see the same numbers:

    @rule("pagecache.swap-io", title="Swap I/O", needs=("vmstat",),
          thresholds={"warn_pages_per_s": Threshold(10, "pages/s", "...why...")})
    def swap_io(ctx, r): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..model.rates import Window
from ..model.snapshot import Snapshot
from ..sources import SYSTEM
from .finding import Action, Evidence, Finding, Subject


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
    needs: tuple[str, ...]
    window: bool  # needs two snapshots (rates); False: one snapshot is enough
    thresholds: dict[str, Threshold]
    func: Callable[["Context", "Rule"], Any]
    doc: str = ""
    uses: tuple[str, ...] = ()  # optional sources: read when present, the rule runs without them

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
         window: bool = True, thresholds: dict[str, Threshold] | None = None):
    """Register a rule function under a stable id ('area.name')."""
    area = id.split(".", 1)[0]

    def deco(func):
        if id in RULES:
            raise ValueError(f"rule {id} declared twice")
        RULES[id] = Rule(id, area, title, tuple(needs), window, dict(thresholds or {}), func,
                         (func.__doc__ or "").strip(), tuple(uses))
        return func

    return deco


def source_file(source: str) -> str:
    """The kernel file behind a source name, for citing evidence ('/proc/vmstat')."""
    s = SYSTEM.get(source)
    if s and s.doc.startswith("/"):
        return s.doc.split(":", 1)[0]
    return source


@dataclass
class Context:
    """What a rule sees: the snapshots of the window, rates between the first and the last."""

    snapshots: list[Snapshot]
    window: Window | None = field(init=False)

    def __post_init__(self):
        self.window = Window(self.snapshots[0], self.snapshots[-1]) if len(self.snapshots) > 1 else None

    @property
    def first(self) -> Snapshot:
        return self.snapshots[0]

    @property
    def last(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def seconds(self) -> float:
        return self.window.seconds if self.window else 0.0

    def get(self, source: str) -> Any:
        return self.last.get(source)

    def delta(self, source: str, path) -> float | None:
        return self.window.delta(source, path) if self.window else None

    def rate(self, source: str, path) -> float | None:
        return self.window.rate(source, path) if self.window else None

    def sysctl(self, name: str) -> int | None:
        s = self.get("sysctl")
        return s.int(name) if s is not None else None

    def sysctl_text(self, name: str) -> str | None:
        s = self.get("sysctl")
        return s.text(name) if s is not None else None

    # evidence helpers: every number carries its unit and where it came from
    def ev(self, name: str, value: Any, unit: str, source: str, threshold: Any = None,
           note: str | None = None) -> Evidence:
        if isinstance(value, float):
            value = round(value, 3)
        return Evidence(name, value, unit, source_file(source) if not source.startswith("/") else source,
                        threshold, note)
