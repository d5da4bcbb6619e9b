"""Owners are not told apart by PID number alone (issue 8, point 5), and the lab's lock file goes
away with its last user (point 15).

A `trace oom` started inside `unshare -p -f --mount-proc` used to switch off a running host
`trace softirq`'s instance and clear its events; `lab cleanup` inside a PID namespace deleted a
running lab's work directory. Here a host trace and a host lab run go on while ksight commands
run in a new PID namespace; both must come through untouched. Root only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import IS_ROOT, need_tool

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="tracing, the lab and PID namespaces need root")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"), PYTHONUNBUFFERED="1")


def _ksight(*args: str) -> list[str]:
    return [sys.executable, "-m", "ksight", *args]


def _in_new_pid_ns(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    need_tool("unshare")
    return subprocess.run(["unshare", "-p", "-f", "--mount-proc", *_ksight(*args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def _tracefs() -> str | None:
    from ksight.trace.tracefs import _read_mountinfo, tracefs_mount_point

    return tracefs_mount_point(_read_mountinfo())


def _our_instances() -> set[str]:
    mnt = _tracefs()
    if not mnt or not os.path.isdir(os.path.join(mnt, "instances")):
        return set()
    return {n for n in os.listdir(os.path.join(mnt, "instances")) if n.startswith("ksight-")}


def test_trace_and_cleanup_in_another_pid_namespace_leave_a_host_trace_alone():
    host = subprocess.Popen(_ksight("trace", "softirq", "--seconds", "6", "--backend", "tracefs"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        mine = set()
        while time.monotonic() < deadline and not mine:
            time.sleep(0.2)
            mine = {n for n in _our_instances() if n.startswith(f"ksight-{host.pid}-")}
        if not mine:
            host.kill()
            out = host.communicate(timeout=30)[0]
            pytest.skip(f"the host trace did not start a tracefs instance: {out[-500:]}")
        a = _in_new_pid_ns("trace", "oom", "--seconds", "1")
        b = _in_new_pid_ns("cleanup")
        still = {n for n in _our_instances() if n.startswith(f"ksight-{host.pid}-")}
        assert still == mine, (a.stdout[-800:], a.stderr[-800:], b.stdout[-800:], b.stderr[-800:])
        out, _ = host.communicate(timeout=60)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(timeout=30)
    assert host.returncode == 0, out[-2000:]
    assert "Traceback" not in out
    # its instance was never switched off or cleared: it counted events and lost none
    m = re.search(r"([\d,]+) events", out)
    assert m and int(m.group(1).replace(",", "")) > 0, out[-2000:]
    assert not re.search(r"[1-9][\d,]* (?:events )?lost", out), out[-2000:]


def test_lab_cleanup_in_another_pid_namespace_leaves_a_running_lab_alone():
    from ksight.lab import available, leftovers

    ok, why = available("inode-steal")
    if not ok:
        pytest.skip(f"inode-steal: {why}")
    lab = subprocess.Popen(_ksight("lab", "run", "inode-steal", "--seconds", "6"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV,
                           start_new_session=True)
    try:
        lines, deadline = [], time.monotonic() + 40
        while time.monotonic() < deadline:
            line = lab.stdout.readline()
            if not line:
                break
            lines.append(line)
            if re.match(r"\s*\d+\.\ds\s", line):
                break
        before = leftovers(lab.pid)
        assert before, ("the lab run made nothing to protect", "".join(lines)[-1500:])
        c = _in_new_pid_ns("lab", "cleanup")
        after = leftovers(lab.pid)
        assert after == before, (c.stdout[-1000:], c.stderr[-1000:])
        out, _ = lab.communicate(timeout=90)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait(timeout=30)
    assert lab.returncode == 0, ("".join(lines) + out)[-2000:]
    assert leftovers(lab.pid) == []


def test_the_lab_lock_file_goes_away_with_its_last_user():
    from ksight.lab import available
    from ksight.lab.sysctl import LOCK_PATH

    ok, why = available("dirty-backlog")
    if not ok:
        pytest.skip(f"dirty-backlog: {why}")
    p = subprocess.run(_ksight("lab", "run", "dirty-backlog", "--seconds", "2"), capture_output=True,
                       text=True, timeout=90, env=ENV)
    assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]
    assert not os.path.exists(LOCK_PATH), LOCK_PATH
