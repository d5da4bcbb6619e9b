import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import softnet_stat
from tests.conftest import corpus_root, corpus_text


def test_procfs_expected():
    # procfs/EXPECTED.md: CPU0 processed 0x00358fe3, dropped 0x00006283, flow_limit_count 0x76
    s = softnet_stat.read(corpus_root("procfs"))
    c0 = s.cpus[0]
    assert (c0.processed, c0.dropped, c0.flow_limit_count) == (0x358FE3, 0x6283, 0x76)
    assert c0.received_rps == 0x855FC


def test_procfs_mixed_widths():
    # rows of 13, 13, 11, 9 and 10 columns (different kernels, see corpora/README.md)
    s = softnet_stat.read(corpus_root("procfs"))
    assert [c.columns for c in s.cpus] == [13, 13, 11, 9, 10]
    # 13 columns: the CPU index is column 13; row 2 also has backlog_len 0xdc
    assert (s.cpus[1].cpu, s.cpus[1].backlog_len, s.cpus[1].cpu_from_kernel) == (1, 0xDC, True)
    # fewer columns: no index printed, so the row number stands in; absent columns are None
    r2, r3, r4 = s.cpus[2:]
    assert (r2.cpu, r2.cpu_from_kernel, r2.received_rps, r2.flow_limit_count, r2.backlog_len) == \
        (2, False, 3, 2, None)
    assert (r3.cpu, r3.processed, r3.time_squeeze, r3.cpu_collision, r3.received_rps) == \
        (3, 0x01663FB2, 0x000109A4, 0x00020E76, None)
    assert (r4.cpu, r4.dropped, r4.received_rps, r4.flow_limit_count) == (4, 1, 0x10, None)
    assert r2.time_squeeze == 0xF0000769  # hex above 2**31 stays an unsigned counter


def test_procfs_broken_file():
    with pytest.raises(ParseError) as ei:
        softnet_stat.parse(corpus_text("procfs", "proc", "net", "softnet_stat.broken"),
                           "proc/net/softnet_stat.broken")
    assert ei.value.lineno == 1


def test_node_exporter_e2e():
    # node_exporter e2e-output.txt node_softnet_*{cpu=...}
    want = {}
    for line in corpus_text("node_exporter", "e2e-output.txt").splitlines():
        if line.startswith("node_softnet_"):
            name, _, val = line.rpartition(" ")
            want[name] = float(val)
    # the fixture was saved without the kernel's final newline: as read it is a cut file
    text = corpus_text("node_exporter", "proc", "net", "softnet_stat")
    with pytest.raises(ParseError, match=r"softnet_stat:4: last line cut off"):
        softnet_stat.read(corpus_root("node_exporter"))
    s = softnet_stat.parse(text + "\n")
    assert len(s.cpus) == 4
    for c in s.cpus:
        lab = f'{{cpu="{c.cpu}"}}'
        assert want["node_softnet_processed_total" + lab] == c.processed
        assert want["node_softnet_dropped_total" + lab] == c.dropped
        assert want["node_softnet_times_squeezed_total" + lab] == c.time_squeeze
        assert want["node_softnet_received_rps_total" + lab] == c.received_rps
        assert want["node_softnet_flow_limit_count_total" + lab] == c.flow_limit_count
        assert want["node_softnet_cpu_collision_total" + lab] == c.cpu_collision
    assert s.total("dropped") == 41
    assert s.total("backlog_len") is None  # 11 columns: not printed by this kernel


def _online(text: str) -> set[int]:
    out = set()
    for part in text.strip().split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def test_live_rows_are_the_online_cpus():
    root = LiveRoot()
    s = softnet_stat.read(root)
    online = _online(root.read_text("sys/devices/system/cpu/online"))
    if s.cpus[0].cpu_from_kernel:
        assert {c.cpu for c in s.cpus} == online
    else:
        assert len(s.cpus) == len(online)


@pytest.mark.parametrize("text", ["", "0000 0001\n", "00358fe3 00006283 00000000 00000000 0000",
                                  "zz 00 00 00 00 00 00 00 00\n"])
def test_bad_input(text):
    with pytest.raises(ParseError):
        softnet_stat.parse(text)
