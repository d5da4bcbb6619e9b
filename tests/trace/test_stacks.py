"""The one classification of CPU samples (trace/stacks.py), on real `perf script` text.

tests/fixtures/trace/perf_script_rps_idle.txt: 30 samples cut verbatim out of
`perf record -F 999 -a --call-graph fp -- sleep 2` + `perf script -F comm,pid,tid,time,event,ip,
sym,dso` (perf 6.1, kernel 6.18, this 2-CPU VM, shared with other jobs) while a UDP flood ran
over the loopback of a private network namespace whose lo steered packets (RPS, rps_cpus=1) to
CPU 0 while the sender ran on CPU 1: NET_RX ran on CPU 0 from the RPS IPI, often while CPU 0
was idle. Picked by hand to cover every case; each sample's context below is labelled by
reading its stack, not by the code:

- idle task in halt or its own bookkeeping (call_cpuidle, do_idle, tick_nohz_idle_exit,
  arch_cpu_idle_exit, flush_smp_call_function_queue from do_idle): idle;
- idle task running NET_RX (or SCHED) softirqs, entered from the IPI's irq exit
  (sysvec_call_function_single -> __irq_exit_rcu -> handle_softirqs) or from do_idle's
  flush_smp_call_function_queue -> do_softirq: softirq (work, not idle);
- the sender in udp_sendmsg: kernel; in Python: user; the sender running its own NET_RX at
  local_bh_enable (do_softirq) to send the RPS IPI: softirq;
- a busy process interrupted by the IPI and running the softirq: softirq;
- a process returning to user space through the entry code after a timer interrupt
  (irqentry_exit_to_user_mode, schedule): kernel, not irq;
- ksoftirqd in run_ksoftirqd: softirq; ksoftirqd scheduling: kernel.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ksight.trace import stacks
from ksight.trace.perf import parse_script


FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "trace" / "perf_script_rps_idle.txt"

# timestamp -> context, by hand (see the docstring)
HAND = {
    "11957.944893": "user", "11957.945892": "kernel", "11957.948896": "user",
    "11957.951898": "kernel", "11957.952899": "kernel", "11957.958906": "softirq",
    "11957.961908": "softirq", "11957.965912": "user",
    "11958.034930": "idle", "11958.035923": "idle", "11958.036933": "softirq",
    "11958.037923": "idle", "11958.038924": "idle", "11958.040936": "softirq",
    "11958.043935": "softirq", "11958.096981": "softirq", "11958.169060": "softirq",
    "11958.179059": "idle", "11958.203082": "softirq", "11958.206085": "softirq",
    "11958.266147": "idle", "11958.293178": "idle", "11958.334215": "softirq",
    "11958.420301": "softirq", "11958.460417": "kernel", "11958.469433": "kernel",
    "11958.598479": "idle", "11959.296243": "softirq", "11959.831784": "kernel",
    "11959.899793": "softirq",
}


@pytest.fixture(scope="module")
def samples():
    return parse_script(FIXTURE.read_text(), str(FIXTURE))


def test_every_sample_in_its_hand_labelled_context(samples):
    assert len(samples) == len(HAND) == 30
    got = {f"{s.time:.6f}": stacks.context(s) for s in samples}
    wrong = {t: (got[t], HAND[t]) for t in HAND if got[t] != HAND[t]}
    assert not wrong, wrong


def test_softirq_on_an_idle_cpu_is_work(samples):
    p = stacks.build(samples, seconds=2.0)
    # by hand from HAND: 8 idle, 13 softirq, 6 kernel, 3 user; no hard irq (cpu-clock
    # samples from a timer interrupt, so it never lands inside another hard interrupt)
    assert (p.samples, p.idle_samples, p.softirq_samples, p.irq_samples) == (30, 8, 13, 0)
    assert (p.kernel_samples, p.user_samples, p.work_samples) == (19, 3, 22)
    # 16 samples are the idle task's; 8 of them ran softirqs and stay in as swapper's work
    procs = {x.pid: (x.comm, x.samples, x.kernel_samples) for x in p.processes}
    assert procs[0] == ("swapper", 8, 8)
    assert sum(1 for s in samples if s.pid == 0) == 16
    # the folded stacks (flame graph) hold the work: 22 samples, the softirq ones included
    assert sum(p.folded.values()) == 22
    assert sum(n for k, n in p.folded.items() if k.startswith("swapper;")) == 8


def test_hottest_kernel_functions_say_their_context(samples):
    k = {f.function: (f.self_samples, f.softirq_samples, f.irq_samples)
         for f in stacks.build(samples, seconds=2.0).kernel_functions}
    # leaves counted by hand in the fixture: handle_softirqs 4 (3 swapper + 1 python),
    # ip_rcv_core 3, native_write_msr 2 (the sender's RPS IPI, in its softirq),
    # finish_task_switch.isra.0 2 (a process and ksoftirqd rescheduling: task context)
    assert k["handle_softirqs"] == (4, 4, 0)
    assert k["ip_rcv_core"] == (3, 3, 0)
    assert k["native_write_msr"] == (2, 2, 0)
    assert k["finish_task_switch.isra.0"] == (2, 0, 0)
    assert "pv_native_safe_halt" not in k and "call_cpuidle" not in k


def test_check_and_profile_count_alike(samples):
    """cpu.high-system's enrichment and `ksight profile` share the classification: 22 work
    samples for both (dropping every idle-task sample would leave 14)."""
    kp = stacks.summarize_kernel(samples, seconds=2.0)
    p = stacks.build(samples, seconds=2.0)
    assert kp.busy_samples == p.work_samples == 22
    assert kp.kernel_samples == 19 and kp.softirq_samples == 13
    top = kp.functions[0]
    assert (top.symbol, top.samples, top.share_pct, top.softirq_samples) == (
        "handle_softirqs", 4, round(100 * 4 / 22, 1), 4)
    # kernel-only stacks, outermost first: the three idle-CPU softirqs entered from the IPI
    # begin at the boot CPU's idle loop; the one that interrupted Python starts at the stub
    hot = {k: n for k, n in kp.stacks.items() if k.endswith("__irq_exit_rcu;handle_softirqs")}
    assert sorted(hot.values()) == [1, 3], hot
    assert [k.split(";")[0] for k, n in hot.items() if n == 3] == ["common_startup_64"]
    assert hot["asm_sysvec_call_function_single;sysvec_call_function_single;__irq_exit_rcu;"
               "handle_softirqs"] == 1


def test_text_shows_the_softirq_share(samples):
    from ksight.render.profile_text import render

    out = render(stacks.build(samples, seconds=2.0))
    # 8/30 idle = 26.7 %; of 22 work: kernel 19 = 86.4 % with softirq 13 = 59.1 %, user 13.6 %
    assert "idle 26.7 % of samples; of the work: kernel 86.4 % (softirq 59.1 %), user 13.6 %" \
        in out, out
    assert "handle_softirqs  [kernel]  (4 in softirq)" in out, out


def _one(comm, pid, *frames):
    return stacks.Sample(comm, pid, pid, 1.0, "cycles", tuple(
        (f, "[kernel.kallsyms]") for f in frames))


# Hard interrupts: cpu-clock cannot sample inside one (its own timer interrupt waits), a PMU's
# NMI can. Stacks made by hand in the shape of arch/x86/include/asm/idtentry.h (the C handler
# sysvec_*/common_interrupt runs the handler between irq_enter_rcu and irq_exit_rcu, then
# irqentry_exit may reschedule).
@pytest.mark.parametrize("sample, want", [
    (_one("swapper", 0, "e1000_intr", "__handle_irq_event_percpu", "handle_irq_event",
          "handle_fasteoi_irq", "__common_interrupt", "common_interrupt",
          "asm_common_interrupt", "pv_native_safe_halt", "default_idle", "do_idle"), "irq"),
    (_one("python", 7, "hrtimer_interrupt", "__sysvec_apic_timer_interrupt",
          "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt", "net_rx_action",
          "handle_softirqs", "__irq_exit_rcu"), "irq"),          # a hard irq inside a softirq
    (_one("python", 7, "__schedule", "preempt_schedule_irq", "irqentry_exit",
          "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt",
          "copy_page"), "kernel"),                                # the way out: task time
    (_one("swapper", 0, "__schedule", "preempt_schedule_irq", "irqentry_exit",
          "sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt",
          "pv_native_safe_halt"), "idle"),
    (_one("swapper", 0, "net_rx_action.cold"), "softirq"),      # name suffixes are ignored
    (stacks.Sample("swapper", 0, 0, 1.0, "cpu-clock", ()), "idle"),
    (stacks.Sample("a.out", 9, 9, 1.0, "cpu-clock", ()), "user"),
    # a kernel stack whose interrupt frames sit below user frames cannot be: user decides
    (stacks.Sample("a.out", 9, 9, 1.0, "cpu-clock", (("main", "/a.out"),
                                                     ("handle_softirqs", "[kernel.kallsyms]"))),
     "user"),
])
def test_hard_interrupts_and_edges(sample, want):
    assert stacks.context(sample) == want


def test_fixture_counts_by_plain_text():
    """The hand numbers above, counted again from the raw text with nothing of ksight: the
    leaf is the first frame line after each header."""
    blocks = [b.splitlines() for b in FIXTURE.read_text().split("\n\n") if b.strip()]
    leaves = Counter(b[1].split()[1] for b in blocks)
    assert leaves["handle_softirqs"] == 4 and leaves["ip_rcv_core"] == 3
    assert leaves["native_write_msr"] == 2 and leaves["finish_task_switch.isra.0"] == 2
    assert sum(1 for b in blocks if b[0].startswith("swapper")) == 16


# --- live: the profile's softirq time against the kernel's own accounting ----------------------
RPS_FLOOD = """
import os, socket, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end = time.monotonic() + float(sys.argv[2])          # bounded
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
r.setblocking(False)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a = r.getsockname(); b = b"x" * 1400
while time.monotonic() < end:
    time.sleep(0.002)                                # leave the receiving CPU idle at times
    for _ in range(300):
        s.sendto(b, a)
    try:
        while True:
            r.recv(2048)
    except BlockingIOError:
        pass
"""


def _proc_stat_cpu() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


@pytest.mark.root
def test_live_softirq_seconds_agree_with_proc_stat(tmp_path):
    """NET_RX steered (RPS) from the sender's CPU to another one, in a private network
    namespace: the softirq CPU time the profile counts (softirq samples / frequency, every CPU)
    matches what the kernel itself accounted as softirq in /proc/stat over the same window
    (perf's sleep), and the idle task's samples that count as work are all interrupt work.
    Dropping the idle task's samples or missing a softirq path would lose part of it."""
    import os
    import subprocess
    import sys

    from tests.conftest import need_tool, unavailable

    if os.geteuid() != 0:
        pytest.skip("needs root (perf, network namespaces)")
    ip = need_tool("ip", "a private network namespace for the flood")
    from ksight.trace import perf

    ok, why = perf.available()
    if not ok:
        unavailable(f"needs perf: {why}")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: one sends, the other receives (RPS)")
    rx_cpu, tx_cpu = cpus[0], cpus[1]
    ns = f"ksight-rps-{os.getpid()}"
    subprocess.run([ip, "netns", "add", ns], check=True)
    flood = None
    try:
        subprocess.run([ip, "netns", "exec", ns, ip, "link", "set", "lo", "up"], check=True)
        r = subprocess.run([ip, "netns", "exec", ns, "sh", "-c",
                            f"echo {1 << rx_cpu:x} > /sys/class/net/lo/queues/rx-0/rps_cpus"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"no RPS on this kernel: {r.stderr.strip()}")
        flood = subprocess.Popen([ip, "netns", "exec", ns, sys.executable, "-c", RPS_FLOOD,
                                  str(tx_cpu), "6"])
        rec = perf.Record(seconds=2.0, freq=499)
        with rec:
            s0 = _proc_stat_cpu()
            rec.run()
            s1 = _proc_stat_cpu()
    finally:
        if flood is not None:
            flood.kill()
            flood.wait()
        subprocess.run([ip, "netns", "del", ns])
    p = stacks.build(rec.samples, seconds=rec.elapsed, freq=499)
    hz = os.sysconf("SC_CLK_TCK")
    si_stat = (s1[6] - s0[6]) / hz                      # field 7: softirq, in USER_HZ ticks
    si_prof = p.softirq_samples / 499
    assert si_stat >= 0.2, f"the flood made little softirq time ({si_stat:.2f} s): {s1}"
    # The profile must not lose softirq time the kernel accounted (dropping the idle task's
    # samples loses the NET_RX work on the idle receiving CPU). It may see more: with NOHZ, the
    # kernel accounts an idle CPU's time from idle entry/exit and its ticks, so interrupt work
    # done from idle is largely counted as idle. Measured here on a quiet machine (2 s of this
    # flood, RPS to CPU 0): CPU 0 idle 177 + softirq 7 ticks of 200 while perf saw it busy in
    # NET_RX; on a loaded machine (ticks running) both agreed, 23-25 % vs 24-26 %. So: a lower
    # bound here; over-counting is covered by the hand-labelled fixture tests above.
    assert si_prof >= 0.7 * si_stat - 0.1, (si_prof, si_stat, p.samples)
    elapsed = rec.elapsed or 2.0
    assert si_prof <= elapsed * len(cpus) + 0.2, (si_prof, elapsed)
    swapper = next((x for x in p.processes if x.pid == 0), None)
    if swapper is not None:
        assert swapper.samples <= p.softirq_samples + p.irq_samples, (swapper, p.softirq_samples)
    net = {f.function for f in p.kernel_functions if f.softirq_samples}
    assert net, [(f.function, f.self_samples) for f in p.kernel_functions]
