"""Clean-up: after a normal run, after SIGINT, after SIGTERM, and after SIGKILL followed by the next
run, no ksight instance remains and the global tracing state is as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ksight.trace import tracefs
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.root]
# these tests check the tracefs instance: pin the backend (auto would pick bpftrace when installed)
CLI = [sys.executable, "-m", "ksight", "trace", "--backend", "tracefs"]


@pytest.fixture
def mnt():
    m = tracefs.acquire()
    try:
        yield m
    finally:
        tracefs.release()


def _global_state(mnt):
    out = {}
    for f in ("set_event", "current_tracer", "tracing_on"):
        with open(os.path.join(mnt, f)) as fh:
            out[f] = fh.read()
    return out


def _ours(mnt, pid=None):
    names = tracefs.our_instances(mnt)
    return [n for n in names if pid is None or n.startswith(f"ksight-{pid}-")]


def _start(args):
    return subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_instance(mnt, pid, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for n in _ours(mnt, pid):
            d = os.path.join(mnt, "instances", n)
            if tracefs.enabled_events(d):
                return d
        time.sleep(0.05)
    raise AssertionError("the CLI never created its instance")


def test_normal_run(mnt):
    before = _global_state(mnt)
    p = subprocess.run(CLI + ["softirq", "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "Tracing softirq time per kind and CPU for 1 s... Hit Ctrl-C to end."
    assert _ours(mnt) == [] or all(not n.startswith(f"ksight-{p}-") for n in _ours(mnt))
    assert _global_state(mnt) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_trace_and_cleans(mnt, sig):
    before = _global_state(mnt)
    p = _start(["softirq", "--seconds", "60"])
    try:
        d = _wait_instance(mnt, p.pid)
        assert "irq:softirq_entry" in tracefs.enabled_events(d)
        p.send_signal(sig)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "events in" in out          # the summary is still printed
    assert not os.path.exists(d)
    assert _ours(mnt, p.pid) == []
    assert _global_state(mnt) == before


def test_sigkill_then_next_run_removes_stale(mnt):
    before = _global_state(mnt)
    p = _start(["softirq", "--seconds", "60"])
    try:
        d = _wait_instance(mnt, p.pid)
        p.kill()
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # the killed run could not clean up: its instance (with events enabled) is still there
    assert os.path.isdir(d) and tracefs.enabled_events(d)
    q = subprocess.run(CLI + ["softirq", "--seconds", "0.5"], capture_output=True, text=True, timeout=60)
    assert q.returncode == 0, q.stderr
    assert not os.path.exists(d)
    assert _ours(mnt, p.pid) == [] and _ours(mnt, q.pid if hasattr(q, "pid") else 0) == []
    assert _global_state(mnt) == before


def test_api_exception_in_body_cleans(mnt):
    from ksight.trace import trace

    with pytest.raises(RuntimeError):
        with trace(["irq:softirq_entry"], seconds=5) as t:
            name = t.instance
            assert os.path.isdir(os.path.join(mnt, "instances", name))
            raise RuntimeError("boom")
    assert not os.path.exists(os.path.join(mnt, "instances", name))


def test_missing_event_is_named(mnt):
    from ksight.trace import trace

    with trace(["irq:softirq_entry", "nosuch:event"], seconds=0.2) as t:
        pass
    assert [(m.event, m.reason) for m in t.missing] == [("nosuch:event", "not on this kernel")]
    assert t.enabled == ["irq:softirq_entry"]


def test_bad_filter_is_a_usage_error(mnt):
    from ksight.errors import UsageError
    from ksight.trace import trace

    with pytest.raises(UsageError):
        with trace(["syscalls:sys_enter_mmap"], filter="nosuchfield == 3", seconds=0.2):
            pass
    assert _ours(mnt, os.getpid()) == []


def test_max_events_bounds_the_trace(mnt):
    from ksight.trace import trace

    with trace(["irq:softirq_entry", "irq:softirq_exit"], seconds=10, max_events=50) as t:
        end = time.monotonic() + 5
        while not t.truncated and time.monotonic() < end:
            time.sleep(0.05)
    assert t.truncated and len(t.events) == 50 == t.count


def test_not_root_says_so():  # noqa: D103
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) missing")
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *CLI,
                        "softirq", "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 3
    assert "tracing needs root" in p.stderr


def test_json_output_and_headline_on_stderr():
    import json

    p = subprocess.run(CLI + ["oom", "--seconds", "0.3", "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["recipe"] == "oom" and res["enabled"] == ["oom:mark_victim"] and res["victims"] == []
    assert p.stderr.startswith("Tracing OOM kills for 0.3 s... Hit Ctrl-C to end.")


def test_unmounts_tracefs_it_mounted():
    from ksight.trace.tracefs import _read_mountinfo, tracefs_mount_point

    if tracefs_mount_point(_read_mountinfo()) is not None:
        pytest.skip("tracefs already mounted by someone else: ksight must (and does) leave it")
    p = subprocess.run(CLI + ["softirq", "--seconds", "0.3"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert tracefs_mount_point(_read_mountinfo()) is None
