import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import statm, status
from tests.conftest import corpus_root


def test_procfs_26231():
    m = statm.read(corpus_root("procfs"), 26231)
    assert (m.size_pages, m.resident_pages, m.text_pages, m.data_pages) == (149919, 12547, 19864, 14531)
    assert m.shared_pages == 2**64 - 1  # the fixture's deliberately huge value is kept, not clipped


def test_pcp_statm_agrees_with_status():
    # Kernel identity (task_statm vs task_mem): size = VmSize, resident = VmRSS,
    # data = VmData + VmStk. The captures read the two files a moment apart, so a busy process
    # may differ (6 threads of one JVM-like process on 4.2.3, one on 3.19.0): ask for 95%.
    from tests.sources.test_proc_pid_pcp import KERNELS

    ok = bad = 0
    for k in KERNELS:
        root = corpus_root("pcp", "unpacked", k)
        for pid in root.listdir("proc"):
            m = statm.parse(root.read_text(f"proc/{pid}/statm"))
            s = status.parse(root.read_text(f"proc/{pid}/status"))
            if s.vm_size_kb is None:
                assert m.size_pages == 0 and m.resident_pages == 0  # kernel thread
                continue
            if (m.size_pages * 4, m.resident_pages * 4, m.data_pages * 4) == \
                    (s.vm_size_kb, s.vm_rss_kb, s.vm_data_kb + s.vm_stk_kb):
                ok += 1
            else:
                bad += 1
    assert ok >= 300 and bad <= ok * 0.05, (ok, bad)


@pytest.mark.parametrize("text", ["", "1 2 3 4 5 6", "1 2 3 4 5 6 7 8", "1 2 3 4 5 x 7"])
def test_malformed(text):
    with pytest.raises(ParseError):
        statm.parse(text)
