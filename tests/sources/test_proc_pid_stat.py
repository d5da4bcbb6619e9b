import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import stat
from tests.conftest import corpus_root, corpus_text


def test_procfs_26231():
    # procfs/EXPECTED.md and proc_stat_test.go: utime 1677, stime 44, starttime 82375,
    # vsize 56274944, rss 1981 pages; comm "vim"
    s = stat.read(corpus_root("procfs"), 26231)
    assert (s.pid, s.comm, s.state) == (26231, "vim", "R")
    assert (s.utime_ticks, s.stime_ticks, s.starttime_ticks) == (1677, 44, 82375)
    assert s.vsize_bytes == 56274944 and s.rss_pages == 1981
    # proc_stat_test.go (rt_priority, policy 0); delayacct_blkio_ticks is field 42 of the line
    assert (s.rt_priority, s.policy, s.delayacct_blkio_ticks) == (0, 0, 31)


def test_comm_with_parentheses_and_spaces_splits_on_last_paren():
    # procfs proc_stat_test.go TestProcStatComm: "(a b ) ( c d) "; the file has a second line
    s = stat.parse(corpus_text("procfs", "proc", "584", "stat"))
    assert s.comm == "(a b ) ( c d) " and s.pid == 1020 and s.ppid == 28378 and s.rss_pages == 155
    # gopsutil fixture: comm file says test(cmd).sh
    g = stat.parse(corpus_text("gopsutil", "process", "testdata", "linux", "68927", "stat"))
    assert g.comm == corpus_text("gopsutil", "process", "testdata", "linux", "68927", "comm").strip()
    assert g.pid == 68927 and g.ppid == 68044


def test_extreme_values():
    # procfs TestProcStatLimits (26232): cutime MinInt64, cstime MaxInt64
    s = stat.read(corpus_root("procfs"), 26232)
    assert s.cutime_ticks == -(2**63) and s.cstime_ticks == 2**63 - 1 and s.nice == -20


def test_old_kernel_without_late_fields_gives_none():
    # a 2.4-era line: 35 fields after comm would be absent; keep only up to rss
    line = "7 (init) S 0 1 1 0 -1 256 10 20 1 2 300 40 5 6 20 0 1 0 99 1000000 50\n"
    s = stat.parse(line)
    assert s.rss_pages == 50 and s.processor is None and s.policy is None and s.exit_code is None


def test_comm_with_newline():
    s = stat.parse("5 (a\nb)) S 1 " + " ".join(["0"] * 20) + "\n")
    assert s.comm == "a\nb)" and s.ppid == 1


@pytest.mark.parametrize("text", ["", "1 (x)", "x (y) S " + "1 " * 30, "1 (x) S 1 2 3 z " + "0 " * 30,
                                  "1 x S " + "0 " * 30])
def test_malformed(text):
    with pytest.raises(ParseError) as ei:
        stat.parse(text, "proc/1/stat")
    assert ei.value.path == "proc/1/stat"


def test_frozen_and_pickles():
    import pickle

    s = stat.parse(corpus_text("procfs", "proc", "26231", "stat"))
    assert pickle.loads(pickle.dumps(s)) == s
    with pytest.raises(AttributeError):
        s.pid = 1
