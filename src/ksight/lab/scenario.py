"""What a fault-lab scenario is, and the bounded run every scenario shares.

A Scenario starts one fault (a load process, a sysctl change, a small cgroup, a swap file),
lets it build for a short warm-up, keeps it going until the `with` block ends or `seconds`
pass, and then undoes everything it did, in reverse order, whatever happened (exception,
Ctrl-C; the CLI turns SIGTERM into KeyboardInterrupt so the same path runs).

    with SCENARIOS["dirty-backlog"].running(8) as run:
        while run.remaining() > 0:
            print(run.evidence()); time.sleep(1)

Every load process a scenario starts is bounded by itself too (it stops at its own deadline)
and dies with the lab (PR_SET_PDEATHSIG), so even a `kill -9` of the lab leaves no load
running; the cgroups, namespaces, loop devices and swap files such a kill leaves behind are in
the run's record (/run/ksight, see ksight.pids) and removed by the next ksight command (or
`ksight cleanup`, `ksight lab cleanup`).

The clock starts when the fault is set up: a run that first waits for another lab run (the
sysctl lock) gets its full `seconds` afterwards (`run.waited_s` says how long it waited).
The clean-up runs with SIGINT and SIGTERM ignored (restored afterwards), so a second Ctrl-C
cannot cut it short, nor kill the `umount`/`losetup -d` it runs; `leftovers(pid)` then checks
what is really gone.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import Unavailable
from ..pids import kill_and_wait

MAX_SECONDS = 120.0


@dataclass
class Running:
    """A scenario in progress: its deadline, what it set up, and a live evidence line."""

    scenario: "Scenario"
    seconds: float
    started: float = field(default_factory=time.monotonic)
    info: dict = field(default_factory=dict)  # paths, pids, cgroup, for tests and the CLI
    stop: threading.Event = field(default_factory=threading.Event)
    procs: list = field(default_factory=list)  # subprocess.Popen started for the load

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    waited_s: float = 0.0   # time spent waiting for another lab run before the fault started

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def wait(self, seconds: float | None = None) -> None:
        """Sleep until the deadline (or for `seconds`, whichever comes first)."""
        end = self.deadline if seconds is None else min(self.deadline, time.monotonic() + seconds)
        while not self.stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, 0.2))

    def evidence(self) -> str:
        try:
            return self.scenario.evidence(self)
        except (OSError, Unavailable) as exc:
            return f"(evidence unavailable: {exc})"


class Scenario:
    """Subclasses set the class attributes and implement `start` (and `evidence`)."""

    name: str = ""
    area: str = ""
    summary: str = ""
    expects: tuple[str, ...] = ()
    needs_root: bool = True
    bounds: str = ""          # one line for people: time, memory, disk
    warmup_s: float = 1.0
    default_seconds: float = 8.0

    def available(self) -> tuple[bool, str]:
        if self.needs_root and os.geteuid() != 0:
            return False, "needs root"
        return True, ""

    def start(self, run: Running, stack: contextlib.ExitStack) -> None:
        """Start the fault; register every undo on `stack` (it unwinds in reverse)."""
        raise NotImplementedError

    def evidence(self, run: Running) -> str:
        return ""

    def describe(self) -> str:
        return f"{self.summary} ({self.bounds})" if self.bounds else self.summary

    @contextlib.contextmanager
    def running(self, seconds: float | None = None):
        seconds = self.default_seconds if seconds is None else float(seconds)
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be within (0, {MAX_SECONDS:g}]")
        ok, why = self.available()
        if not ok:
            raise Unavailable(f"lab scenario {self.name}", why)
        run = Running(self, seconds + self.warmup_s)
        stack = contextlib.ExitStack()
        try:
            stack.callback(run.stop.set)  # covers a start() that fails half-way
            stack.callback(kill_and_wait, run.procs)  # covers a start() that fails half-way
            self.start(run, stack)
            stack.callback(kill_and_wait, run.procs)  # load processes die before their files go
            stack.callback(run.stop.set)  # runs first on unwind: helper threads stop at once
            run.started = time.monotonic()   # the fault exists from now: the clock starts
            run.wait(self.warmup_s)
            yield run
        finally:
            with signals_ignored():
                stack.close()

    def __repr__(self) -> str:
        return f"<Scenario {self.name}>"


@contextlib.contextmanager
def signals_ignored():
    """SIGINT and SIGTERM ignored for the block (main thread only; restored afterwards).
    Children started meanwhile (umount, losetup -d, swapoff) inherit it: a terminal's Ctrl-C,
    sent to the whole process group, does not kill them half-way either."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def python_worker(code: str, *args) -> list[str]:
    """argv that runs a small Python load program with this interpreter (no site imports)."""
    return [sys.executable, "-I", "-S", "-c", code, *map(str, args)]


def start_thread(run: Running, target, *args) -> threading.Thread:
    """A helper thread that must watch run.stop; joined on unwind (registered by the caller)."""
    t = threading.Thread(target=target, args=args, daemon=True, name=f"lab-{run.scenario.name}")
    t.start()
    return t


__all__ = ["Scenario", "Running", "python_worker", "start_thread", "signals_ignored", "MAX_SECONDS"]
