"""ksight profile: the pure view on perf script text (counts worked out by hand from the blocks
below, captured from perf 6.1 on the development VM and trimmed), what profiling needs, the
CLI's refusals, and live runs as root with perf: the kernel share of a syscall loop against its
own /proc/PID/stat, the sample count against the frequency, Ctrl-C, and no perf left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from ksight.trace.perf import parse_folded, parse_script
from ksight.views import profile
from tests.conftest import needs_root, unavailable
from tests.trace.perf_children import gone, interrupt, running, wait_perf

IDLE = """\
swapper     0/0      9554.120001: cpu-clock:ppp: 
\tffffffff822601ab pv_native_safe_halt ([kernel.kallsyms])
\tffffffff82261cb5 default_idle ([kernel.kallsyms])
\tffffffff813cfed6 do_idle ([kernel.kallsyms])
\tffffffff81301533 common_startup_64 ([kernel.kallsyms])

"""
SOFTIRQ_ON_IDLE = """\
swapper     0/0      9554.120002: cpu-clock:ppp: 
\tffffffff81f0a1b0 net_rx_action ([kernel.kallsyms])
\tffffffff813a2c11 handle_softirqs ([kernel.kallsyms])
\tffffffff813a2e55 irq_exit_rcu ([kernel.kallsyms])
\tffffffff82261cb5 default_idle ([kernel.kallsyms])
\tffffffff813cfed6 do_idle ([kernel.kallsyms])

"""
READV = """\
python3  3805/3805   9554.127457: cpu-clock:ppp: 
\tffffffff81bb0900 iov_iter_zero ([kernel.kallsyms])
\tffffffff81d7f898 read_iter_zero ([kernel.kallsyms])
\tffffffff816d38c8 do_iter_readv_writev ([kernel.kallsyms])
\tffffffff816d4685 vfs_readv ([kernel.kallsyms])
\tffffffff816d4843 do_readv ([kernel.kallsyms])
\tffffffff8225aa01 do_syscall_64 ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])
\t           fddc0 __GI___readv (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t               0 [unknown] ([unknown])

"""
READ_ITER = """\
python3  3805/3805   9554.137457: cpu-clock:ppp: 
\tffffffff81d7f898 read_iter_zero ([kernel.kallsyms])
\tffffffff816d38c8 do_iter_readv_writev ([kernel.kallsyms])
\tffffffff816d4685 vfs_readv ([kernel.kallsyms])
\tffffffff816d4843 do_readv ([kernel.kallsyms])
\tffffffff8225aa01 do_syscall_64 ([kernel.kallsyms])
\tffffffff81000130 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])
\t           fddc0 __GI___readv (/usr/lib/x86_64-linux-gnu/libc.so.6)

"""
VDSO = """\
python3  3805/3805   9554.117363: cpu-clock:ppp: 
\t             b63 __vdso_clock_gettime ([vdso])
\t           cf439 clock_gettime@@GLIBC_2.17 (/usr/lib/x86_64-linux-gnu/libc.so.6)

"""
MEMMOVE = """\
python  2566/2566   9554.117364: cpu-clock:ppp: 
\t          1a2b3c __memmove_avx512_unaligned_erms (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t               0 [unknown] ([unknown])

"""
# 2 idle, 1 softirq on an idle CPU, 3 readv in iov_iter_zero, 1 in read_iter_zero,
# 2 in the vDSO, 1 memmove of another process: 10 samples, 8 of work, 5 of them in the kernel
SCRIPT = IDLE * 2 + SOFTIRQ_ON_IDLE + READV * 3 + READ_ITER + VDSO * 2 + MEMMOVE


def prof(**kw):
    return profile.build(parse_script(SCRIPT), seconds=1.0, **kw)


def test_where_the_samples_fell():
    p = prof()
    assert (p.samples, p.idle_samples, p.kernel_samples, p.user_samples) == (10, 2, 5, 3)
    assert p.work_samples == 8 and p.target == "all CPUs"


def test_hottest_kernel_functions_self_and_total():
    k = {f.function: (f.self_samples, f.total_samples) for f in prof().kernel_functions}
    assert k["iov_iter_zero"] == (3, 3)
    assert k["read_iter_zero"] == (1, 4)          # leaf once, on the stack of all 4 reads
    assert k["net_rx_action"] == (1, 1)           # softirq work on an idle CPU is work
    assert "do_syscall_64" not in k               # never the leaf: no self time ...
    assert [f.function for f in prof().kernel_functions][0] == "iov_iter_zero"
    allf = {f.function: f for f in prof().functions}
    assert allf["__vdso_clock_gettime"].self_samples == 2 and not allf["__vdso_clock_gettime"].kernel
    assert allf["iov_iter_zero"].kernel and allf["iov_iter_zero"].dso == "[kernel.kallsyms]"
    assert "pv_native_safe_halt" not in allf      # idle is not a hot function


def test_processes_and_stacks():
    p = prof()
    procs = {x.pid: (x.comm, x.samples, x.kernel_samples) for x in p.processes}
    assert procs[3805] == ("python3", 6, 4) and procs[2566] == ("python", 1, 0)
    assert procs[0] == ("swapper", 1, 1)
    top = p.stacks[0]
    assert top.samples == 3 and top.frames[-1] == "iov_iter_zero" and top.frames[0] == "[unknown]"


def test_folded_leaves_out_idle_and_kernel_only_keeps_kernel_frames():
    f = prof().folded
    assert sum(f.values()) == 8
    assert f["python3;[unknown];__GI___readv;entry_SYSCALL_64_after_hwframe;do_syscall_64;"
             "do_readv;vfs_readv;do_iter_readv_writev;read_iter_zero;iov_iter_zero"] == 3
    k = profile.build(parse_script(SCRIPT), seconds=1.0, kernel_only=True)
    assert k.folded["python3;[user]"] == 2 and k.folded["python;[user]"] == 1
    assert k.folded["python3;entry_SYSCALL_64_after_hwframe;do_syscall_64;do_readv;vfs_readv;"
                    "do_iter_readv_writev;read_iter_zero;iov_iter_zero"] == 3
    assert k.functions == () and k.kernel_functions[0].function == "iov_iter_zero"


def test_empty_and_symbolless():
    p = profile.build([], seconds=2.0)
    assert p.samples == 0 and p.kernel_functions == () and p.folded == {}
    hidden = SCRIPT.replace("iov_iter_zero", "[unknown]").replace("read_iter_zero", "[unknown]")
    p = profile.build(parse_script(hidden), seconds=1.0)
    assert p.unknown_kernel_samples == 4
    assert any("kptr_restrict" in n for n in p.notes)


def test_text_render_has_the_numbers():
    from ksight.render.profile_text import render

    out = render(prof(), {"flame graph": "/tmp/x.svg"})
    assert "10 samples" in out and "idle 20.0 %" in out and "kernel 62.5 %" in out
    assert re.search(r"^\s+3\s+37\.5 %\s+3\s+37\.5 %\s+iov_iter_zero$", out, re.M), out
    assert "flame graph written to /tmp/x.svg" in out


@pytest.mark.parametrize("kw, want", [
    (dict(perf_ok=(False, "perf is not installed"), euid=0, paranoid=2, kptr_restrict=0),
     ["linux-perf"]),
    (dict(perf_ok=(True, "perf 6.1"), euid=1000, paranoid=2, kptr_restrict=1),
     ["not root", "perf_event_paranoid=-1", "kptr_restrict=0"]),
    (dict(perf_ok=(True, "perf 6.1"), euid=1000, paranoid=3, kptr_restrict=0, pid=42),
     ["perf_event_paranoid is 3", "perf_event_paranoid=1"]),
])
def test_requirements_say_what_is_needed(kw, want):
    needs = profile.requirements(**kw)
    text = " ".join(f"{n.what}: {n.fix}" for n in needs)
    for w in want:
        assert w in text, text


def test_requirements_met():
    assert profile.requirements(perf_ok=(True, "perf 6.1"), euid=0, paranoid=4,
                                kptr_restrict=2) == []


# --- the CLI ------------------------------------------------------------------------------------
def ksight(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "ksight", "profile", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_cli_refuses_from_and_unwritable_files():
    r = ksight("--from", "/tmp/nothing")
    assert r.returncode == 3 and "running kernel" in r.stderr, r.stderr
    r = ksight("--svg", "/nonexistent-dir/x.svg", "--seconds", "1")
    assert r.returncode == 3 and "does not exist" in r.stderr, r.stderr
    r = ksight("--seconds", "0")
    assert r.returncode == 3
    r = ksight("-p", "999999999", "--seconds", "1")
    assert r.returncode == 3 and "no process" in r.stderr


def test_cli_says_perf_is_missing(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}   # no perf (nor anything else) on PATH
    r = ksight("--seconds", "1", env=env)
    assert r.returncode == 3, r
    assert "perf is not installed" in r.stderr and "linux-perf" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_help_ends_with_examples():
    r = subprocess.run([sys.executable, "-m", "ksight", "profile", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert "examples:" in r.stdout and "ksight profile --svg" in r.stdout


# --- live, as root with perf ----------------------------------------------------------------------
LOOP = ("import os, time\nfd = os.open('/dev/zero', os.O_RDONLY); b = [bytearray(65536)]\n"
        "end = time.monotonic() + 20\nwhile time.monotonic() < end: os.readv(fd, b)\n")


def _need_perf():
    from ksight.trace import perf

    ok, why = perf.available()
    if not ok:
        unavailable(f"needs perf: {why}")


def _times(pid):
    with open(f"/proc/{pid}/stat") as f:
        t = f.read()
    rest = t[t.rfind(")") + 2:].split()
    return int(rest[11]), int(rest[12])


@needs_root
def test_live_profile_of_a_syscall_loop(tmp_path):
    _need_perf()
    loop = subprocess.Popen([sys.executable, "-c", LOOP])
    try:
        time.sleep(0.3)
        u0, s0 = _times(loop.pid)
        svg, folded = tmp_path / "p.svg", tmp_path / "p.folded"
        r = ksight("-p", str(loop.pid), "--seconds", "3", "--json", "--svg", str(svg),
                   "--folded", str(folded))
        u1, s1 = _times(loop.pid)
    finally:
        loop.kill()
        loop.wait()
    assert r.returncode == 0, r.stderr
    assert "sampling PID" in r.stderr
    doc = json.loads(r.stdout)
    # about 99 samples a second of a process that is always running (a shared machine takes
    # some of its time: at least a third)
    assert 99 * 3 / 3 <= doc["samples"] <= 99 * 3 * 1.3, doc["samples"]
    # the kernel's share of the samples is the share of system time /proc/PID/stat counted
    stime_share = 100 * (s1 - s0) / max(1, (u1 - u0) + (s1 - s0))
    kshare = 100 * doc["kernel_samples"] / max(1, doc["kernel_samples"] + doc["user_samples"])
    assert abs(kshare - stime_share) <= 25, (kshare, stime_share)
    names = {f["function"] for f in doc["kernel_functions"]}
    assert names & {"iov_iter_zero", "read_iter_zero", "clear_user", "rep_stos_alternative",
                    "__clear_user", "clear_user_erms", "clear_user_rep_good"} or any(
        "read" in n for n in names), names
    assert sum(parse_folded(folded.read_text()).values()) == doc["samples"] - doc["idle_samples"]
    ET.fromstring(svg.read_text())


@needs_root
def test_ctrl_c_stops_early_reports_and_leaves_no_perf():
    _need_perf()
    with running([sys.executable, "-m", "ksight", "profile", "--seconds", "60",
                  "--kernel-only"]) as p:
        perf_pids = list(wait_perf(p.pid))
        assert perf_pids, "ksight started no perf"
        time.sleep(1.5)
        out, err, took = interrupt(p)
    assert p.returncode == 0, err
    assert took < 30
    assert "stopped early" in out and "ksight profile:" in out
    for k in perf_pids:
        assert gone(k), k


@needs_root
def test_cli_as_another_user_says_what_is_needed():
    from tests.conftest import need_tool

    setpriv = need_tool("setpriv", "to run ksight as nobody")
    r = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-m", "ksight", "profile", "--seconds", "1"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 3, r
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        level = f.read().strip()
    assert f"not root (kernel.perf_event_paranoid is {level})" in r.stderr, r.stderr
    assert "sudo ksight profile" in r.stderr and "Traceback" not in r.stderr
