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


def test_fast_path_matches_general_parser():
    # the fast path (kernel format) and the general parser give identical results, on corpora
    # text, on a kernel thread, and on this machine's live processes; everything pickles
    import glob
    import os

    texts = [corpus_text("procfs", "proc", "26231", "status"),
             corpus_text("gopsutil", "process", "testdata", "linux", "1", "status")]
    for p in glob.glob("/proc/[0-9]*/status")[:50]:
        try:
            with open(p) as f:
                texts.append(f.read())
        except OSError:
            pass
    assert len(texts) > 10 and os.path.exists("/proc/self/status")
    for text in texts:
        fast, slow = status.parse(text), status._parse_general(text, status.PATH)
        assert fast == slow and fast.fields == slow.fields
        assert all(getattr(fast, n) == getattr(slow, n) for n in status._FIELD_NAMES)
        assert pickle.loads(pickle.dumps(fast)) == fast


def test_vmpmd_and_missing_hugetlb():
    # 4.x kernels print VmPMD (the procfs fixture: "VmPMD:\t      12 kB"), current ones do not;
    # pre-4.4 kernels have no HugetlbPages: all parse, absent is None
    text = corpus_text("procfs", "proc", "26231", "status")
    s = status.parse(text)
    assert s.vm_pmd_kb == 12 and s.fields["VmPMD"] == "12 kB" and s.vm_rss_kb == 6716
    no_pmd = "".join(ln for ln in text.splitlines(True) if not ln.startswith("VmPMD"))
    s = status.parse(no_pmd)
    assert s.vm_pmd_kb is None and "VmPMD" not in s.fields and s.vm_pte_kb == 128
    no_huge = "".join(ln for ln in text.splitlines(True) if not ln.startswith("HugetlbPages"))
    s = status.parse(no_huge)
    assert s.hugetlb_pages_kb is None and s.vm_swap_kb == 660


def test_comm_with_colon_tab():
    # a process can name itself "a:\tb": the one-split fast path must not misalign
    s = status.parse("Name:\ta:\tb\nState:\tS (sleeping)\nTgid:\t5\nVmRSS:\t   4 kB\n")
    assert s.name == "a:\tb" and s.tgid == 5 and s.vm_rss_kb == 4


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
