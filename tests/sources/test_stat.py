import os

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import stat
from tests.conftest import corpus_files, corpus_text


def test_procfs_values():
    # procfs/EXPECTED.md: cpu user 301854 ticks, ctxt 38014093, btime 1418183276, softirq 5057579;
    # stat_test.go: cpu7 softirq 31 ticks, processes 26442, procs_running 2, procs_blocked 1,
    # softirq RCU 508444
    s = stat.parse(corpus_text("procfs", "proc", "stat"))
    assert s.cpu_total.user_ticks == 301854
    assert s.ctxt_total == 38014093
    assert s.btime == 1418183276
    assert s.softirq_total == 5057579
    assert s.cpus[7].softirq_ticks == 31
    assert s.forks_total == 26442
    assert (s.procs_running, s.procs_blocked) == (2, 1)
    assert s.softirq("RCU") == 508444
    assert sorted(s.cpus) == list(range(8))


def test_gopsutil_host():
    # gopsutil cpu/testdata/linux/424/proc/stat: 4 CPUs; the kernel sums nanoseconds before
    # converting to ticks, so the total line is the per-CPU sum within a tick per CPU
    # saved without the kernel's final newline: as read, a cut file (issue 8)
    text = corpus_text("gopsutil", "cpu", "testdata", "linux", "424", "proc", "stat")
    with pytest.raises(ParseError, match="last line cut off"):
        stat.parse(text)
    s = stat.parse(text + "\n")
    assert sorted(s.cpus) == [0, 1, 2, 3]
    assert abs(sum(c.user_ticks for c in s.cpus.values()) - s.cpu_total.user_ticks) <= 4
    assert s.cpu_total.steal_ticks == 5892


def test_old_kernel_fewer_columns_are_none():
    # 2.6.24..2.6.32 print 9 columns (no guest_nice); 2.4 prints 4 and has page/swap lines
    s = stat.parse("cpu  1 2 3 4 5 6 7 8 9\ncpu0 1 2 3 4 5 6 7 8 9\n")
    assert s.cpu_total.guest_ticks == 9 and s.cpu_total.guest_nice_ticks is None
    old = stat.parse("cpu  10 20 30 40\ncpu0 10 20 30 40\npage 5741 1808\nswap 1 0\n"
                     "disk_io: (3,0):(99,1,2,3,4)\nctxt 100\nbtime 5\nprocesses 9\n")
    assert old.cpu_total.iowait_ticks is None and old.cpu_total.steal_ticks is None
    assert old.ctxt_total == 100 and old.procs_running is None and old.softirq_per_kind is None
    assert old.intr_total is None and old.intr_per_irq == ()


def test_offline_cpu_is_absent():
    s = stat.parse("cpu  2 0 0 2\ncpu0 1 0 0 1\ncpu2 1 0 0 1\n")
    assert sorted(s.cpus) == [0, 2] and 1 not in s.cpus


def test_long_intr_line_bigsys():
    # PCP bigsys-root-hpbl920gen8: a 240-CPU HP box (kernel with 9 CPU columns)
    s = stat.parse(corpus_text("pcp", "unpacked", "bigsys-root-hpbl920gen8", "proc", "stat"))
    assert len(s.cpus) > 200
    assert s.cpu_total.guest_ticks == 0 and s.cpu_total.guest_nice_ticks is None
    assert len(s.intr_per_irq) > 100
    assert s.softirq_total == sum(s.softirq_per_kind)


@pytest.mark.parametrize("text", [
    "", "\n", "garbage line here\n", "cpu  1 2 3\n", "cpu  1 2 x 4\n",
    "cpu  1 2 3 4\ncpuX 1 2 3 4\n", "cpu  1 2 3 4\nctxt\n", "cpu  1 2 3 4\nctxt 12 13\n",
    "cpu  1 2 3 4\nintr 5 x\n", "ctxt 5\n",  # no cpu line
    "cpu  301854 612 111922 8979004 3552 2 3944 0 0 0\ncpu0 44490 19 2",  # truncated mid-line
])
def test_bad_input(text):
    with pytest.raises(ParseError) as ei:
        stat.parse(text)
    assert ei.value.path == "proc/stat"


def test_every_stat_in_the_corpora_parses():
    files = corpus_files("**/proc/stat")
    assert len(files) >= 12
    for f in files:
        text = f.read_text()
        if not text.strip():  # gopsutil times_empty: deliberately empty
            with pytest.raises(ParseError):
                stat.parse(text, str(f))
            continue
        if not text.endswith("\n"):  # fixtures saved without the kernel's final newline
            with pytest.raises(ParseError, match="last line cut off"):
                stat.parse(text, str(f))
            text += "\n"
        s = stat.parse(text, str(f))
        assert s.cpus and s.ctxt_total is not None, f
        if s.softirq_per_kind:
            assert s.softirq_total == sum(s.softirq_per_kind), f


def test_live():
    s = stat.read(LiveRoot())
    online = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    assert len(s.cpus) == os.cpu_count() or (online and len(s.cpus) >= len(online))
    # the total line is the sum of the per-CPU lines (read under the same lock, ± rounding)
    for attr in ("user_ticks", "system_ticks", "idle_ticks"):
        total = getattr(s.cpu_total, attr)
        assert abs(sum(getattr(c, attr) for c in s.cpus.values()) - total) <= 5 * len(s.cpus), attr
    assert s.cpu_total.guest_nice_ticks is not None  # modern kernel: all 10 columns
    assert s.procs_running >= 1  # this process is running
    assert s.btime < __import__("time").time()
