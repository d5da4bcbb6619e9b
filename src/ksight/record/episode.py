"""An episode: one rule firing on one subject over a stretch of time, as `ksight report` lists it
(rule id, subject, start, end, the evidence at its worst window, the bundle captured for it).

A recorder judges every window; consecutive windows where a rule fires on the same subject make
one episode instead of one line per sample. This dataclass is the contract between the code that
finds episodes (record/episodes.py), the report views and renderers, and the JSON (`ksight report
--json`); fields are only ever added.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..diagnose.finding import Finding, Subject


@dataclass(frozen=True)
class Episode:
    rule: str  # the rule id, e.g. "memory.leak-suspect"
    area: str
    severity: str  # the worst severity seen over the episode
    subject: Subject | None  # None: the whole machine
    start: float  # wall-clock time (Unix seconds) of the first window where the rule fired
    end: float  # wall-clock time of the last window where it fired
    windows: int  # how many judged windows it fired in
    peak: Finding  # the finding at its worst window: its evidence is the peak evidence
    peak_at: float  # wall-clock time of that window
    bundle: str | None = None  # path of the deep-evidence bundle a trigger captured, if any

    @property
    def seconds(self) -> float:
        return self.end - self.start
