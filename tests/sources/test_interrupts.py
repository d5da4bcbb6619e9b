import bz2

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import interrupts
from tests.conftest import corpus, corpus_text

def e2e(metric: str) -> list[tuple[dict[str, str], float]]:
    from tests.conftest import e2e_rows

    return e2e_rows(metric)


def test_node_exporter_e2e_every_value_and_label():
    it = interrupts.parse(corpus_text("node_exporter", "proc", "interrupts"))
    rows = e2e("node_interrupts_total")  # labels cpu, type (IRQ label), info, devices
    assert len(rows) == 112
    for labels, val in rows:
        irq = it.irqs[labels["type"]]
        assert irq.per_cpu[it.cpus.index(int(labels["cpu"]))] == val
        if irq.numeric:  # node_exporter: info = chip, devices = the rest
            assert (irq.chip, irq.description or "") == (labels["info"], labels["devices"])
        else:  # info = the text, devices empty
            assert (irq.chip, irq.description) == (None, labels["info"])
    # node_exporter skips ERR/MIS (one total): we keep them, flagged
    assert it.irqs["ERR"].total_only and it.irqs["ERR"].per_cpu == (0,)
    assert it.per_cpu("MIS") is None


def test_node_exporter_aarch64():
    it = interrupts.parse(corpus_text("node_exporter", "proc", "interrupts_aarch64"))
    assert it.cpus == tuple(range(8))
    # hand-read: "IPI0:2768808080 2844211768 ..." (label glued to the first count)
    assert it.irqs["IPI0"].per_cpu[:2] == (2768808080, 2844211768)
    assert it.irqs["IPI0"].description == "Rescheduling interrupts"
    a = it.irqs["10"]
    assert a.per_cpu[0] == 3287008667 and a.chip == "GICv3" and a.description == "27 Level arch_timer"
    assert it.irqs["50"].chip == "ARMH0061:00"
    assert it.irqs["Err"].total_only and it.irqs["Err"].total == 0


def test_procfs_fixture():
    it = interrupts.parse(corpus_text("procfs", "proc", "interrupts"))
    # hand-read from the fixture: "  0:  49  0  0  0   IO-APIC   2-edge      timer",
    # "LOC:  10196  7429  8542  8229   Local timer interrupts"
    i0 = it.irqs["0"]
    assert i0.chip == "IO-APIC" and i0.description == "2-edge timer"
    assert i0.per_cpu == (49, 0, 0, 0)
    assert it.irqs["LOC"].per_cpu == (10196, 7429, 8542, 8229)
    assert it.irqs["36"].per_cpu == (0, 335, 37, 0) and it.irqs["36"].description == "16385-edge virtio0-input.0"
    assert it.irqs["LOC"].description == "Local timer interrupts"


def _pcp(name: str) -> str:
    p = corpus("pcp", "files", name)
    return bz2.decompress(p.read_bytes()).decode() if name.endswith(".bz2") else p.read_text()


@pytest.mark.parametrize("name,ncpu,nrows,sample", [
    # nrows = lines - 1 header; samples hand-read from the files (awk on the raw text)
    ("interrupts-1cpu-i686", 1, 33, [("LOC", 0, 6651207), ("11", 0, 307009), ("MCP", 0, 276)]),
    ("interrupts-2cpu-s390x", 2, 2, [("EXT", 1, 57022), ("I/O", 0, 6989)]),
    ("interrupts-16cpu-s390x", 16, 58, [("EXC", 15, 3846), ("DAS", 0, 613), ("3", 2, 43)]),
    ("interrupts-8cpu-x86_64", 8, 38, [("33", 0, 1469469), ("TLB", 7, 186595), ("MCP", 3, 2525)]),
    ("interrupts-1152cpu-x86_64.bz2", 1152, 1056, [("LOC", 0, 6342723), ("LOC", 1151, 425311),
                                                 ("RES", 1151, 4910), ("TLB", 1151, 1167)]),
])
def test_pcp_files(name, ncpu, nrows, sample):
    text = _pcp(name)
    it = interrupts.parse(text)
    assert it.cpus == tuple(range(ncpu))
    assert len(text.strip().splitlines()) - 1 == nrows
    assert len(it.irqs) == nrows  # every row kept (labels are unique in these files)
    for label, cpu, val in sample:
        assert it.irqs[label].per_cpu[cpu] == val


def test_pcp_details():
    it = interrupts.parse(_pcp("interrupts-1cpu-i686"))
    # one CPU: ERR and MIS are still totals, LOC is per-CPU
    assert it.irqs["ERR"].total_only and not it.irqs["LOC"].total_only
    assert it.irqs["11"].description == "11-fasteoi uhci_hcd:usb1, ens3"
    s390 = interrupts.parse(_pcp("interrupts-16cpu-s390x"))
    assert s390.irqs["CLK"].description == "[EXT] Clock Comparator" and s390.irqs["CLK"].chip is None
    big = interrupts.parse(_pcp("interrupts-1152cpu-x86_64.bz2"))
    assert big.irqs["24"].description.endswith("PCIe PME")


HDR = "           CPU0       CPU1\n"


@pytest.mark.parametrize("text", [
    "",
    "garbage\n",
    HDR + "LOC:   5   6   Local timer interrupts\n  0:   1",          # cut mid-line (no newline)
    HDR + "LOC:   5   Local timer interrupts\n",                    # a count missing
    HDR + "LOC    5   6   Local timer interrupts\n",
    HDR + "  0:   1   2   IO-APIC   2-edge   timer\nLOC:  5x  6  Local\n",
])
def test_malformed(text):
    with pytest.raises(ParseError):
        interrupts.parse(text)


def test_offline_cpu_hole_in_header():
    it = interrupts.parse("   CPU0   CPU2\n  0:  1  2  IO-APIC 2-edge timer\nERR:  0\n")
    assert it.cpus == (0, 2)
    assert it.per_cpu("0") == {0: 1, 2: 2}


def _raw_total(name: str) -> int | None:
    """Sum of one named row of /proc/interrupts, read by hand (None: no such row here)."""
    for line in open("/proc/interrupts"):
        head, _, rest = line.partition(":")
        if head.strip() == name:
            return sum(int(x) for x in rest.split() if x.isdigit())
    return None


def test_live():
    loc0 = _raw_total("LOC")  # local timer interrupts (x86): they only grow
    it = interrupts.read(LiveRoot())
    loc1 = _raw_total("LOC")
    # interrupts lists online CPUs: /sys/devices/system/cpu/online, read independently
    online = open("/sys/devices/system/cpu/online").read().strip()
    lo, _, hi = online.partition("-")
    if "," not in online:
        assert it.cpus == tuple(range(int(lo), int(hi or lo) + 1))
    if loc0 is None:  # no LOC row on this architecture: absent, not 0
        assert loc1 is None and it.total("LOC") is None
    else:
        assert 0 < loc0 <= it.total("LOC") <= loc1
    # /proc/stat "intr" first number is the sum of all interrupts; ours is not larger by much
    total = sum(i.total for i in it.irqs.values() if i.numeric)
    stat_intr = int(next(l for l in open("/proc/stat") if l.startswith("intr ")).split()[1])
    assert 0 < total <= stat_intr + 1_000_000
