"""Deltas and rates between two snapshots, computed in exactly one place.

Counters in the kernel only go up, until they do not: a reboot, a 32-bit wrap, a CPU unplugged
(its per-CPU counts leave the sums). A counter that went backwards is flagged as a reset and
gives no delta (None), never a negative or huge rate.

Superseded by model.series (Series: per-interval deltas and rates, resets and reboots flagged),
which every view and rule now uses; no module under src/ uses Window any more. It is kept only
for tests/model/test_rates.py and tests/store/test_capture.py (and the model package's
exports): delete it once those move to Series.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .snapshot import Snapshot

_MISSING = object()


def lookup(obj: Any, path: str | Sequence[Any]) -> Any:
    """Find a value by a dotted path through attributes, mapping keys and sequence indexes.

    lookup(snap.get("stat"), "cpus.0.user"), lookup(vmstat, "counters.pgscan_direct"). A path
    given as a tuple may hold keys that contain dots. Returns None when any step is absent.
    """
    parts = path.split(".") if isinstance(path, str) else list(path)
    cur = obj
    for p in parts:
        if cur is None:
            return None
        if isinstance(cur, Mapping):
            nxt = cur.get(p, _MISSING)
            if nxt is _MISSING and isinstance(p, str) and p.lstrip("-").isdigit():
                nxt = cur.get(int(p), _MISSING)
        elif isinstance(cur, Sequence) and not isinstance(cur, str):
            try:
                nxt = cur[int(p)]
            except (ValueError, IndexError):
                nxt = _MISSING
        else:
            nxt = getattr(cur, str(p), _MISSING)
        if nxt is _MISSING:
            return None
        cur = nxt
    return cur


@dataclass(frozen=True)
class Delta:
    """The change of one counter: value is None when either side is absent or it was reset."""

    value: float | None
    reset: bool = False


def counter_delta(prev: float | None, cur: float | None) -> Delta:
    if prev is None or cur is None:
        return Delta(None)
    if cur < prev:
        return Delta(None, reset=True)
    return Delta(cur - prev)


@dataclass
class Window:
    """Two snapshots of one host and the time between them.

    The interval prefers CLOCK_MONOTONIC (live), then the kernel's uptime (captures), then the
    wall clock. `resets` collects every (source, path) whose counter went backwards, so views
    can say "counter reset" instead of printing a wrong number.
    """

    first: Snapshot
    last: Snapshot
    resets: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        a, b = self.first, self.last
        if a.monotonic is not None and b.monotonic is not None and b.monotonic > a.monotonic:
            return b.monotonic - a.monotonic
        if a.uptime_s is not None and b.uptime_s is not None and b.uptime_s > a.uptime_s:
            return b.uptime_s - a.uptime_s
        if a.taken_at is not None and b.taken_at is not None:
            return max(b.taken_at - a.taken_at, 0.0)
        return 0.0

    @property
    def rebooted(self) -> bool:
        """The uptime went backwards: every counter restarted."""
        a, b = self.first.uptime_s, self.last.uptime_s
        return a is not None and b is not None and b < a

    def values(self, source: str, path: str | Sequence[Any] | Callable[[Any], Any]) -> tuple[Any, Any]:
        """The value at `path` (or computed by `path(obj)`) in the first and last snapshot."""
        a, b = self.first.get(source), self.last.get(source)
        if callable(path):
            return (None if a is None else path(a)), (None if b is None else path(b))
        return lookup(a, path), lookup(b, path)

    def delta(self, source: str, path: str | Sequence[Any]) -> float | None:
        """last - first for a cumulative counter; None if absent on either side or reset."""
        if self.rebooted:
            self._flag(source, path)
            return None
        a, b = self.values(source, path)
        d = counter_delta(a, b)
        if d.reset:
            self._flag(source, path)
        return d.value

    def rate(self, source: str, path: str | Sequence[Any]) -> float | None:
        """Per-second rate of a cumulative counter over the window."""
        d = self.delta(source, path)
        s = self.seconds
        if d is None or s <= 0:
            return None
        return d / s

    def _flag(self, source: str, path: str | Sequence[Any]) -> None:
        if callable(path):
            name = getattr(path, "__name__", "value")
        else:
            name = path if isinstance(path, str) else ".".join(map(str, path))
        key = (source, name)
        if key not in self.resets:
            self.resets.append(key)
