"""What a diagnosis says. These dataclasses ARE the `ksight check --json` contract
(docs/check-json.md): fields are only ever added, never renamed or removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")


def severity_rank(s: str) -> int:
    return SEVERITIES.index(s)


@dataclass(frozen=True)
class Evidence:
    """One number and where it came from. `threshold` is the limit it was compared to, if any."""

    name: str
    value: Any
    unit: str
    source: str
    threshold: Any = None
    note: str | None = None


@dataclass(frozen=True)
class Action:
    """Something to do. kind: 'sysctl' (name/current/recommended), 'command', 'cgroup' or 'code'
    (text). Actions are data so that a tuning step can apply and roll them back later."""

    kind: str
    text: str | None = None
    name: str | None = None
    current: str | None = None
    recommended: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class Subject:
    pid: int | None = None
    comm: str | None = None
    cgroup: str | None = None
    socket: str | None = None


@dataclass(frozen=True)
class Finding:
    id: str
    area: str
    severity: str
    title: str
    evidence: tuple[Evidence, ...]
    explanation: str
    actions: tuple[Action, ...] = ()
    subject: Subject | None = None

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.id}: severity {self.severity!r} not one of {SEVERITIES}")


@dataclass(frozen=True)
class NotEvaluated:
    """A rule that could not run, and why (a source it needs was unavailable)."""

    rule: str
    reason: str


@dataclass
class Report:
    host: dict
    kernel: str | None
    window: dict
    findings: list[Finding] = field(default_factory=list)
    unavailable: list[dict] = field(default_factory=list)
    not_evaluated: list[NotEvaluated] = field(default_factory=list)
    rules_run: int = 0
    counter_resets: list[str] = field(default_factory=list)
    # rules that need a window (rates) were skipped: one snapshot only
    window_missing: bool = False

    @property
    def worst(self) -> str | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=severity_rank)

    def exit_status(self) -> int:
        """0 nothing at warning or above, 1 warning, 2 critical, 3 could not diagnose."""
        if self.rules_run == 0 or (self.window_missing and not self.findings):
            return 3  # nothing found, but most rules could not look: that is not "ok"
        w = self.worst
        if w == "critical":
            return 2
        if w == "warning":
            return 1
        return 0
