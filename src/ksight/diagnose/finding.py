"""What a diagnosis says. These dataclasses ARE the `ksight check --json` contract
(docs/check-json.md): fields are only ever added, never renamed or removed."""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
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


ACTION_KINDS = ("sysctl", "cgroup", "command", "code")


@dataclass(frozen=True)
class Action:
    """Something to do, as data, so that a tuning step can apply it and roll it back:

    - sysctl: `name`, `current`, `recommended` (sysctl -w name=recommended);
    - cgroup: a cgroup file write: `path` (absolute path of the file), `name` (the file name,
      e.g. memory.high), `current`, `recommended` (echo recommended > path);
    - command: `text`, a command to run (read-only investigation, or a documented change);
    - code: `text`, a change to the application or its deployment, which no tool can apply.
    `why` says what the change does and what it costs. Build them with the class methods."""

    kind: str
    text: str | None = None
    name: str | None = None
    current: str | None = None
    recommended: str | None = None
    why: str | None = None
    path: str | None = None

    def __post_init__(self):
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"action kind {self.kind!r} not one of {ACTION_KINDS}")
        if self.kind == "sysctl" and (not self.name or self.recommended is None):
            raise ValueError("a sysctl action needs a name and a recommended value")
        if self.kind == "cgroup" and (not self.path or self.recommended is None):
            raise ValueError("a cgroup action needs the file's path and a recommended value")
        if self.kind in ("command", "code") and not self.text:
            raise ValueError(f"a {self.kind} action needs its text")

    @classmethod
    def sysctl(cls, name: str, current, recommended, why: str | None = None) -> "Action":
        return cls("sysctl", name=name, current=None if current is None else str(current),
                   recommended=str(recommended), why=why)

    @classmethod
    def cgroup_write(cls, path: str, recommended, current=None, why: str | None = None,
                     text: str | None = None) -> "Action":
        name = path.rstrip("/").rsplit("/", 1)[-1]
        return cls("cgroup", text=text, name=name, path=path,
                   current=None if current is None else str(current),
                   recommended=str(recommended), why=why)

    @classmethod
    def command(cls, text: str, why: str | None = None) -> "Action":
        return cls("command", text=text, why=why)

    @classmethod
    def code(cls, text: str, why: str | None = None) -> "Action":
        return cls("code", text=text, why=why)


@dataclass(frozen=True)
class Subject:
    """What a finding is about; None fields are not part of it. Fields are only ever added (the
    JSON contract, docs/check-json.md)."""

    pid: int | None = None
    comm: str | None = None
    cgroup: str | None = None
    socket: str | None = None  # a socket or listener, "ADDR:PORT" (or "ADDR:PORT -> PEER:PORT")
    netns: str | None = None  # the network namespace, "net:[INODE]" as /proc/PID/ns/net reads
    interface: str | None = None  # a network interface, e.g. "eth0"
    device: str | None = None  # a block device, e.g. "sda"
    cpu: str | None = None  # a CPU or a CPU list, e.g. "3" or "0-3"
    object: str | None = None  # a kernel object: "slab cache dentry", "vmalloc caller f [mod]",
    # "tmpfs /dev/shm", "SysV shmid 5"


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
    rules_run: int = 0  # rules that looked (not those that could not)
    rules_selected: int = 0
    counter_resets: list[str] = field(default_factory=list)
    # rules that need a window (rates) were skipped: one snapshot only
    window_missing: bool = False
    # where the input series was cut (reboot, another host) and how many snapshots were left out
    series_breaks: list[dict] = field(default_factory=list)
    snapshots_left_out: int = 0
    notes: list[str] = field(default_factory=list)  # how the window was taken, for people

    @property
    def worst(self) -> str | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=severity_rank)

    @property
    def complete(self) -> bool:
        """Every selected rule looked."""
        return not self.not_evaluated and self.rules_run > 0

    @property
    def verdict(self) -> str:
        """critical / warning: the worst finding. ok: every rule looked, nothing at warning or
        above. incomplete: nothing at warning or above, but some rules could not look.
        unknown: no rule could look."""
        if self.rules_run == 0:
            return "unknown"
        w = self.worst
        if w in ("critical", "warning"):
            return w
        return "ok" if self.complete else "incomplete"

    def exit_status(self) -> int:
        """0 every rule looked and found nothing at warning or above; 1 warning; 2 critical;
        3 could not diagnose: no rule looked, or some could not and nothing worse was found."""
        v = self.verdict
        return {"critical": 2, "warning": 1, "ok": 0}.get(v, 3)
