"""Processes ksight itself starts (lab load, tracing helpers): is one alive, and end them.

ksight only ever ends processes it started, by PID (never by name)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_and_wait(procs: Iterable[subprocess.Popen], timeout: float = 5.0) -> None:
    """SIGKILL every still-running process we started, then reap them (bounded wait each)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
