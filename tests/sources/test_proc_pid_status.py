import pickle

import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import status
from tests.conftest import corpus_root, corpus_text


def test_procfs_26231():
    # procfs proc_status_test.go: VmPeak 58472, VmSize 58440, VmHWM 8028, VmRSS 6716, RssAnon 2092,
    # RssFile 4624, RssShmem 0, VmData 2580, VmStk 136, VmExe 948, VmLib 6816, VmPTE 128,
    # VmSwap 660 (kB); voluntary 4742839, nonvoluntary 1727500
    s = status.read(corpus_root("procfs"), 26231)
    assert (s.vm_peak_kb, s.vm_size_kb, s.vm_hwm_kb, s.vm_rss_kb) == (58472, 58440, 8028, 6716)
    assert (s.rss_anon_kb, s.rss_file_kb, s.rss_shmem_kb) == (2092, 4624, 0)
    assert (s.vm_data_kb, s.vm_stk_kb, s.vm_exe_kb, s.vm_lib_kb, s.vm_pte_kb, s.vm_swap_kb) == \
        (2580, 136, 948, 6816, 128, 660)
    assert (s.voluntary_ctxt_switches, s.nonvoluntary_ctxt_switches) == (4742839, 1727500)
    assert s.tgid == 26231 and s.uid == (1000, 1000, 1000, 0) and s.gid == (1001, 1001, 1001, 0)
    assert s.state == "S" and s.fields["State"] == "S (sleeping)" and s.fields["VmRSS"] == "6716 kB"


def test_space_separated_fixture():
    # procfs 26235 uses spaces, not tabs, after the colon
    s = status.read(corpus_root("procfs"), 26235)
    assert s.name == "kube-proxy" and s.ngid == 12345 and s.threads == 51 and s.vm_rss_kb == 42652


def test_kernel_thread_has_no_vm_lines():
    # gopsutil fixture: ksoftirqd/0, a kernel thread: no Vm* lines -> None, not 0
    s = status.parse(corpus_text("gopsutil", "process", "testdata", "linux", "1", "status"))
    assert s.name == "ksoftirqd/0" and s.vm_rss_kb is None and s.vm_size_kb is None and s.rss_anon_kb is None
    assert s.threads == 1 and s.ppid == 2


def test_large_uid():
    # gopsutil fixture 23819: uid beyond int32
    s = status.parse(corpus_text("gopsutil", "process", "testdata", "linux", "23819", "status"))
    assert s.uid == (4061200383,) * 4 and s.vm_rss_kb == 0


def test_lazy_status_is_equivalent():
    text = corpus_text("procfs", "proc", "26231", "status")
    lazy = status.parse_lazy(text)
    eager = status.parse(text)
    assert lazy.vm_rss_kb == 6716 and lazy.fields == eager.fields
    assert all(getattr(lazy, n) == getattr(eager, n) for n in status._FIELD_NAMES)
    lazy2 = pickle.loads(pickle.dumps(status.parse_lazy(text)))
    assert lazy2.vm_swap_kb == 660
    bad = status.parse_lazy("VmRSS:\tmany kB\n")
    assert bad.vm_rss_kb is None and "expected 'N kB'" in bad.parse_error


@pytest.mark.parametrize("text,lineno", [("Name:\tx\nVmRSS:\tabc kB\n", 2), ("Name:\tx\nVmRSS:\t12 MB\n", 2),
                                         ("Name:\tx\nUid:\t0 a 0 0\n", 2), ("Name:\tx\nno colon here\n", 2),
                                         ("Name:\tx\nThreads:\tmany\n", 2)])
def test_malformed(text, lineno):
    with pytest.raises(ParseError) as ei:
        status.parse(text, "proc/9/status")
    assert ei.value.lineno == lineno and ei.value.path == "proc/9/status"


def test_empty():
    with pytest.raises(ParseError):
        status.parse("")
