import bz2

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import softirqs
from tests.conftest import corpus, corpus_text

def e2e(metric: str) -> list[tuple[dict[str, str], float]]:
    from tests.conftest import e2e_rows

    return e2e_rows(metric)


def test_node_exporter_e2e():
    s = softirqs.parse(corpus_text("node_exporter", "proc", "softirqs"))
    rows = e2e("node_softirqs_functions_total")  # labels cpu, type; from proc/softirqs
    assert len(rows) == 20
    for labels, val in rows:
        assert s.per_cpu(labels["type"])[int(labels["cpu"])] == val
    assert s.cpus == (0, 1)


def test_procfs_fixture():
    s = softirqs.parse(corpus_text("procfs", "proc", "softirqs"))
    # prometheus/procfs softirqs_test.go: HI CPU0 3, TIMER CPU0 2776180, NET_RX CPU1 28694
    assert s.counts["HI"][0] == 3
    assert s.counts["TIMER"] == (2776180, 247490)
    assert s.counts["NET_RX"][1] == 28694
    assert s.total("RCU") == 605871 + 532783
    assert s.total("NOPE") is None


def _pcp(name: str) -> str:
    p = corpus("pcp", "files", name)
    return bz2.decompress(p.read_bytes()).decode() if name.endswith(".bz2") else p.read_text()


@pytest.mark.parametrize("name,ncpu,sample", [
    # (kind, cpu, value) hand-read from the files
    ("softirqs-1cpu-i686", 1, [("NET_RX", 0, 2315415), ("RCU", 0, 9479358)]),
    ("softirqs-8cpu-x86_64", 8, [("BLOCK_IOPOLL", 7, 0), ("SCHED", 2, 11420741), ("RCU", 7, 1790731)]),
    ("softirqs-1152cpu-x86_64.bz2", 1152, [("TIMER", 0, 114978), ("TIMER", 1, 72591), ("TIMER", 1151, 28403), ("SCHED", 1151, 9257)]),
])
def test_pcp_files(name, ncpu, sample):
    s = softirqs.parse(_pcp(name))
    assert s.cpus == tuple(range(ncpu))
    assert len(s.counts) == 10
    for kind, cpu, val in sample:
        assert s.counts[kind][cpu] == val


HDR = "                    CPU0       CPU1\n"


@pytest.mark.parametrize("text", [
    "",
    "garbage\n",
    HDR + "          HI:          3\n",              # cut mid-line
    HDR + "          HI:          3   x\n",
    HDR + "          HI          3   4\n",
    "      CPU0 CPUX\n          HI:   1 2\n",
])
def test_malformed(text):
    with pytest.raises(ParseError):
        softirqs.parse(text)


def test_live():
    import os
    s = softirqs.read(LiveRoot())
    # softirqs lists every possible CPU: /sys/devices/system/cpu/possible, read independently
    possible = open("/sys/devices/system/cpu/possible").read().strip()
    lo, _, hi = possible.partition("-")
    assert s.cpus == tuple(range(int(lo), int(hi or lo) + 1))
    assert "TIMER" in s.counts and s.total("TIMER") > 0
    assert len(s.cpus) >= os.cpu_count()
