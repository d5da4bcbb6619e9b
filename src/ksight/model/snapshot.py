"""A Snapshot: one timestamped collection of parsed kernel sources.

It holds raw values as the kernel reported them (cumulative counters, not rates); rates come
from a Series of snapshots (model/series.py), so live views, replay and reports derive them
through the same code. What could not be read is listed in `unavailable`, with the reason, so
every view can tell the user what is missing instead of showing a silent zero.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Any


@dataclass(frozen=True)
class Missing:
    """A source (or file) that could not be read, and why, in words for people."""

    source: str
    reason: str


@dataclass(frozen=True)
class HostInfo:
    """Who a snapshot is of: host, kernel, boot, and the units its files are in."""

    hostname: str | None = None
    kernel: str | None = None  # uname -r
    kernel_version: str | None = None  # /proc/version
    page_size: int = 4096
    page_size_assumed: bool = False  # True when a capture did not record it
    clk_tck: int = 100  # USER_HZ: the unit of /proc/stat and /proc/PID/stat times
    cpus: int | None = None
    boot_id: str | None = None  # /proc/sys/kernel/random/boot_id: tells two boots apart


@dataclass(frozen=True)
class Snapshot:
    """One look at the kernel: parsed sources, processes, sockets, and what was missing."""

    taken_at: float | None  # wall clock, seconds since the epoch (None: a capture without manifest)
    monotonic: float | None  # CLOCK_MONOTONIC when taken live; None from a capture without it
    uptime_s: float | None  # /proc/uptime: lets rates be computed from any capture
    host: HostInfo
    sources: dict[str, Any] = field(default_factory=dict)
    processes: dict[int, Any] | None = None  # pid -> collect.processes.Process
    sockets: Any | None = None  # collect.sockets.SocketTable
    unavailable: tuple[Missing, ...] = ()

    def get(self, name: str) -> Any | None:
        """The parsed source, or None when it was not collected or could not be read."""
        return self.sources.get(name)

    def missing(self, name: str) -> Missing | None:
        for m in self.unavailable:
            if m.source == name:
                return m
        return None
