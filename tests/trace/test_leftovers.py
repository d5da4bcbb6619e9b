"""Issue 8: owners proven dead by their record's lock, not a PID number; argument validation."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ksight import pids

KSIGHT = [sys.executable, "-m", "ksight"]


def test_record_lock_proves_death_and_life(tmp_path):
    code = ("import sys,time; sys.path[:0]=[%r]\nfrom ksight import pids\n"
            "r=pids.Record(%r); r.add('dir', path='/nonexistent', ident='dir:x')\n"
            "print('ready', flush=True); time.sleep(30)") % (os.path.abspath("src"), str(tmp_path))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        dead, live = pids.records(str(tmp_path))
        assert dead == [] and [e["ident"] for e in live] == ["dir:x"]   # its owner holds the lock
    finally:
        p.kill()
        p.wait()
    dead, live = pids.records(str(tmp_path))
    try:
        assert live == [] and [e["ident"] for e in dead[0].entries] == ["dir:x"]
        assert dead[0].owner.pid == p.pid
    finally:
        for d in dead:
            d.keep_only([])
            d.close()
    assert os.listdir(tmp_path) == []


def test_identity_of_self():
    me = pids.me()
    assert me.pid == os.getpid() and me.start == pids.start_ticks("self")
    here, certain = pids.locate(me)
    assert here == os.getpid() and certain


def test_locate_dead_process():
    p = subprocess.Popen(["true"])
    who = pids.describe(p.pid)
    p.wait()
    if who is None:
        pytest.skip("exited before it could be described")
    assert pids.locate(who) == (None, True)


@pytest.mark.parametrize("argv,msg", [
    (["trace", "reclaim", "--seconds", "-5"], "above 0"),
    (["trace", "reclaim", "--seconds", "nan"], "above 0"),
    (["trace", "reclaim", "--buffer-kb", "-1"], "KiB per CPU"),
    (["trace", "reclaim", "--buffer-kb", "99999999999"], "KiB per CPU"),
    (["trace", "profile", "--svg", "/nonexistent/x.svg"], "does not exist"),
])
def test_trace_refuses_nonsense(argv, msg):
    r = subprocess.run(KSIGHT + argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_non_root_messages():
    def as_nobody(*argv):
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               *KSIGHT, *argv], capture_output=True, text=True, timeout=60,
                              cwd="/", env={**os.environ, "PYTHONPATH": os.path.abspath("src")})
    r = as_nobody("lab", "cleanup")
    assert r.returncode == 3 and "needs root" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = as_nobody("trace", "--check")
    assert "Traceback" not in r.stderr
    assert "tracefs without instances" not in r.stdout, r.stdout
