"""Find the perf a ksight process started (tests of the perf runner): by the parent's
/proc/PID/task/PID/children and the child's argv, never by name across the machine."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def argv_of(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def wait_perf(pid: int, timeout: float = 20.0) -> dict[int, list[bytes]]:
    """The perf children of `pid` (PID -> argv), waiting up to `timeout` s for one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {k: a for k in children(pid)
                 if (a := argv_of(k)) and a[0].rsplit(b"/", 1)[-1].startswith(b"perf")}
        if found:
            return found
        time.sleep(0.2)
    return {}


def gone(pid: int) -> bool:
    from ksight.pids import is_zombie

    import os

    return not os.path.exists(f"/proc/{pid}") or is_zombie(pid)


@contextlib.contextmanager
def running(argv: list[str]):
    """A child with its output piped, killed and reaped on the way out if it still runs."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def interrupt(p, timeout: float = 60.0) -> tuple[str, str, float]:
    """SIGINT (Ctrl-C) to `p`: its stdout, stderr and how long it took to end."""
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=timeout)
    return out, err, time.monotonic() - t0
