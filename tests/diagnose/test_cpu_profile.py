"""sample_kernel's summary: kernel leaves among busy samples (perf script text as perf 6.1 prints it)."""

import os

import pytest

from ksight.trace import perf

# Shape copied from `perf script -F comm,pid,tid,time,event,ip,sym,dso` on this project's VM
# (perf 6.1): idle samples are the swapper (pid 0); a user sample ends in a libc path.
SCRIPT = """\
swapper     0/0      9099.359806: cpu-clock:ppp: 
\tffffffff822601ab pv_native_safe_halt ([kernel.kallsyms])
\tffffffff82261cb5 default_idle ([kernel.kallsyms])

loop 4242/4242  9099.359856: cpu-clock:ppp: 
\tffffffff81a0 __x64_sys_getppid ([kernel.kallsyms])
\tffffffff81b0 do_syscall_64 ([kernel.kallsyms])
\tffffffff81c0 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])
\t    7f3a1234 getppid (/usr/lib/x86_64-linux-gnu/libc.so.6)

loop 4242/4242  9099.369856: cpu-clock:ppp: 
\tffffffff81a0 __x64_sys_getppid ([kernel.kallsyms])
\tffffffff81b0 do_syscall_64 ([kernel.kallsyms])
\tffffffff81c0 entry_SYSCALL_64_after_hwframe ([kernel.kallsyms])

loop 4242/4242  9099.379856: cpu-clock:ppp: 
\tffffffff81d0 nf_hook_slow ([nf_conntrack])

loop 4242/4242  9099.389856: cpu-clock:ppp: 
\t          167158 __strcmp_evex (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t   2dc5d000f196a [unknown] ([unknown])

loop 4242/4242  9099.399856: cpu-clock:ppp: 
\t    7ffd1000 __vdso_clock_gettime ([vdso])
"""


def test_kernel_leaves_ranked_among_busy_samples():
    samples = perf.parse_script(SCRIPT)
    p = perf.summarize_kernel(samples, seconds=1)
    # by hand: 6 samples, 5 busy (one swapper), 3 with a kernel leaf (2 getppid, 1 module)
    assert (p.samples, p.busy_samples, p.kernel_samples) == (6, 5, 3)
    assert [(f.symbol, f.samples, f.share_pct) for f in p.functions] == [
        ("__x64_sys_getppid", 2, 40.0), ("nf_hook_slow", 1, 20.0)]
    # kernel part of the stack only, root first; the libc caller is cut off
    assert p.stacks["entry_SYSCALL_64_after_hwframe;do_syscall_64;__x64_sys_getppid"] == 2
    assert p.source == "perf record -a (1 s)"
    assert perf.summarize_kernel(samples, seconds=0.5, pid=7).source == "perf record -p 7 (0.5 s)"


def test_no_samples_is_empty_not_a_division_by_zero():
    p = perf.summarize_kernel([], seconds=1)
    assert p.functions == () and p.busy_samples == 0


def test_vdso_and_unknown_are_not_kernel():
    assert perf.is_kernel_frame("[kernel.kallsyms]") and perf.is_kernel_frame("[ext4]")
    for d in ("[vdso]", "[unknown]", "/usr/lib/libc.so.6", ""):
        assert not perf.is_kernel_frame(d)


def test_bad_seconds_refused():
    with pytest.raises(ValueError):
        perf.sample_kernel(0)
    with pytest.raises(ValueError):
        perf.sample_kernel(600)


@pytest.mark.root
def test_live_short_profile_sees_a_syscall_loop():
    from tests.conftest import need_tool, unavailable

    need_tool("perf", "the kernel profile")
    ok, why = perf.available()
    if not ok:
        unavailable(f"perf does not run here: {why}")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import subprocess
    import sys
    # a bounded syscall loop (at most 4 s) so the kernel has something to show
    code = "import os,time\nt=time.time()+4\nwhile time.time()<t:\n    os.getppid(); os.stat('/')\n"
    p = subprocess.Popen([sys.executable, "-c", code])
    try:
        prof = perf.sample_kernel(1.0)
    finally:
        p.kill()
        p.wait()
    assert prof.busy_samples > 0 and prof.kernel_samples > 0
    assert prof.functions and 0 < prof.functions[0].share_pct <= 100
    assert any("sys" in k.lower() or "syscall" in k.lower() for k in prof.stacks), list(prof.stacks)[:5]
    # perf is gone when sample_kernel returns
    out = subprocess.run(["pgrep", "-P", str(os.getpid()), "-x", "perf"], capture_output=True)
    assert out.returncode == 1


@pytest.mark.root
def test_ctrl_c_stops_the_check_profile_and_leaves_nothing():
    """Ctrl-C (SIGINT) during sample_kernel: KeyboardInterrupt reaches the caller (the check's
    enrichment then says "interrupted") within seconds, perf and its sleep are gone, and the
    perf.data directory is removed."""
    import glob
    import subprocess
    import sys
    import tempfile
    import time

    from tests.conftest import unavailable
    from tests.trace.perf_children import children, gone, interrupt, running, wait_perf

    if os.geteuid() != 0:
        pytest.skip("needs root")
    ok, why = perf.available()
    if not ok:
        unavailable(f"perf does not run here: {why}")
    code = ("import time\nfrom ksight.trace import perf\nt = time.monotonic()\n"
            "try:\n    perf.sample_kernel(30)\nexcept KeyboardInterrupt:\n"
            "    print('interrupted', round(time.monotonic() - t, 1))\n")
    with running([sys.executable, "-c", code]) as p:
        kids = list(wait_perf(p.pid))
        assert kids, "no perf started"
        time.sleep(1.0)
        kids += [c for k in kids for c in children(k)]     # perf's bounded sleep too
        dirs = glob.glob(os.path.join(tempfile.gettempdir(), f"ksight-perf-{p.pid}-*"))
        assert dirs, "no perf.data directory"
        out, err, took = interrupt(p)
    assert out.startswith("interrupted"), (out, err)
    assert took < 20 and len(kids) >= 2, kids
    assert not any(os.path.exists(d) for d in dirs), dirs
    for k in kids:
        assert gone(k), k
