"""`ksight trace profile` is `ksight profile`: the same checks, messages, output and JSON; the
trace-only options are refused, the profile-only ones accepted; `--seconds 0` samples until
Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import need_tool, needs_root, unavailable
from tests.trace.perf_children import gone, interrupt, running, wait_perf


def ksight(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "ksight", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("argv, msg", [
    (["trace", "profile", "--stacks"], "--stacks does not apply to profile"),
    (["trace", "profile", "--backend", "bpftrace"], "--backend does not apply to profile"),
    (["trace", "profile", "--buffer-kb", "64"], "--buffer-kb does not apply to profile"),
    (["trace", "profile", "--seconds", "700"], "0.1 to 600 s"),
    (["trace", "profile", "--freq", "5000"], "--freq: give 1..2000"),      # ksight profile's
    (["trace", "profile", "-p", "999999999"], "no process 999999999"),      # ksight profile's
    (["trace", "profile", "--from", "/tmp/x"], "running kernel"),
    (["trace", "reclaim", "--kernel-only"], "--kernel-only applies to profile only"),
    (["trace", "reclaim", "--svg", "/tmp/x.svg"], "--svg applies to profile only"),
])
def test_refusals(argv, msg):
    r = ksight(*argv)
    assert r.returncode == 3 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_perf_missing_said_as_by_ksight_profile(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}   # no perf (nor anything else) on PATH
    a = ksight("trace", "profile", "--seconds", "1", env=env)
    b = ksight("profile", "--seconds", "1", env=env)
    assert a.returncode == b.returncode == 3
    assert "perf is not installed" in a.stderr and "linux-perf" in a.stderr, a.stderr
    assert a.stderr.replace("trace profile", "profile") == b.stderr


def test_listed_as_the_alias():
    r = ksight("trace", "--list")
    assert r.returncode == 0 and "profile     `ksight profile`" in r.stdout, r.stdout


@needs_root
def test_as_another_user_names_the_command():
    setpriv = need_tool("setpriv", "to run ksight as nobody")
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-m", "ksight", "trace", "profile", "--seconds", "1"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 3 and "sudo ksight trace profile" in r.stderr, r.stderr


def _need_perf():
    from ksight.trace import perf

    ok, why = perf.available()
    if not ok:
        unavailable(f"needs perf: {why}")


@needs_root
def test_same_json_and_options_as_ksight_profile():
    _need_perf()
    a = ksight("trace", "profile", "--seconds", "1", "--json", "--kernel-only", "-F", "199",
               "--top", "3")
    b = ksight("profile", "--seconds", "1", "--json")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    da, db = json.loads(a.stdout), json.loads(b.stdout)
    assert set(da) == set(db)
    assert (da["freq"], da["kernel_only"], db["freq"], db["kernel_only"]) == (199, True, 99, False)
    assert len(da["kernel_functions"]) <= 3 and da["functions"] == []
    # 1 s at 199 Hz on every CPU: at most 199 per CPU (and some: ksight itself runs)
    assert 0 < da["samples"] <= 199 * 1.3 * os.cpu_count(), da["samples"]
    t = ksight("trace", "profile", "--seconds", "0.5")
    assert t.returncode == 0 and t.stdout.startswith("ksight profile: "), t.stdout


@needs_root
def test_seconds_0_runs_until_ctrl_c_and_leaves_no_perf():
    _need_perf()
    with running([sys.executable, "-m", "ksight", "trace", "profile", "--seconds", "0"]) as p:
        found = wait_perf(p.pid)
        assert found, "ksight started no perf"
        # its bounded sleep is the 600 s cap of "until Ctrl-C"
        assert all(b"600.000" in argv for argv in found.values()), found
        time.sleep(1.0)
        out, err, _ = interrupt(p)
    perf_pids = list(found)
    assert p.returncode == 0, err
    assert "(stopped early)" in out and "600 s" in err, (out, err)
    for k in perf_pids:
        assert gone(k), k
