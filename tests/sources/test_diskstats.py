import os

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import diskstats
from tests.conftest import corpus_text, corpus_root



def e2e(metric: str) -> dict[str, float]:
    """node_exporter e2e-output.txt: {device label: value} for one metric (independent numbers)."""
    from tests.conftest import e2e_rows

    return {lb["device"]: v for lb, v in e2e_rows(metric)}


def test_node_exporter_e2e_values():
    d = diskstats.read(corpus_root("node_exporter"))
    checked = 0
    # node_exporter divides ms by 1000 and multiplies sectors by 512 (e2e-output.txt)
    for metric, attr, scale in [
        ("node_disk_reads_completed_total", "reads_completed", 1),
        ("node_disk_reads_merged_total", "reads_merged", 1),
        ("node_disk_writes_completed_total", "writes_completed", 1),
        ("node_disk_writes_merged_total", "writes_merged", 1),
        ("node_disk_read_bytes_total", "read_bytes", 1),
        ("node_disk_read_time_seconds_total", "read_ms", 1000),
        ("node_disk_write_time_seconds_total", "write_ms", 1000),
        ("node_disk_io_now", "ios_in_progress", 1),
        ("node_disk_io_time_seconds_total", "io_ms", 1000),
        ("node_disk_io_time_weighted_seconds_total", "weighted_io_ms", 1000),
        ("node_disk_discards_completed_total", "discards_completed", 1),
        ("node_disk_discards_merged_total", "discards_merged", 1),
        ("node_disk_discarded_sectors_total", "sectors_discarded", 1),
        ("node_disk_discard_time_seconds_total", "discard_ms", 1000),
        ("node_disk_flush_requests_total", "flush_completed", 1),
        ("node_disk_flush_requests_time_seconds_total", "flush_ms", 1000),
    ]:
        want = e2e(metric)
        assert want, metric
        for dev, val in want.items():
            got = getattr(d.devices[dev], attr)
            assert got / scale == pytest.approx(val, rel=1e-9), (metric, dev)
            checked += 1
    assert checked > 40
    # hand-read from the e2e file: sdc is a 20-field row (5.5+), sdb 18 fields (4.18+)
    assert d.devices["sdc"].flush_completed == 1555 and d.devices["sdc"].fields == 20
    assert d.devices["sdb"].flush_completed is None and d.devices["sdb"].discards_completed == 68851
    # 14-field row: discards and flushes absent, not 0
    assert d.devices["nvme0n1"].discards_completed is None and d.devices["nvme0n1"].flush_ms is None
    assert d.devices["nvme0n1"].writes_completed == 1078320  # node_disk_writes_completed_total 1.07832e+06


def test_procfs_mixed_row_lengths():
    # prometheus/procfs fixture: 14-, 18- and 20-field rows in one file
    d = diskstats.parse(corpus_text("procfs", "proc", "diskstats"))
    assert d.devices["sda"].reads_completed == 25354637
    assert d.devices["sda"].weighted_io_ms == 82621804
    assert d.devices["sdb"].sectors_discarded == 1925173784
    assert d.devices["sdc"].flush_completed == 127 and d.devices["sdc"].flush_ms == 182
    assert d.devices["dm-0"].major == 252 and d.devices["dm-0"].minor == 0
    assert len(d.devices) == 52  # wc -l of the file; every name is distinct


def test_old_kernel_partition_row():
    # 2.6.0-2.6.24 partitions: reads, sectors read, writes, sectors written
    d = diskstats.parse("   3    1 hda1 35486 38030 38030 38030\n")
    p = d.devices["hda1"]
    assert (p.reads_completed, p.sectors_read, p.writes_completed, p.sectors_written) == (35486, 38030, 38030, 38030)
    assert p.reads_merged is None and p.io_ms is None


def test_empty_is_no_devices():
    assert diskstats.parse("").devices == {}


@pytest.mark.parametrize("text", [
    "   8       0 sda 1 2 3 4 5 6 7 8 9 10\n",          # truncated mid-row (13 fields)
    "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12\n",    # 15 fields: neither 14 nor 18
    "   8       0 sda 1 2 3 4 x 6 7 8 9 10 11\n",       # garbage count
    "garbage\n",
    "   x       0 sda 1 2 3 4 5 6 7 8 9 10 11\n",
])
def test_malformed(text):
    with pytest.raises(ParseError) as ei:
        diskstats.parse("   7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n" + text)
    assert ei.value.lineno == 2 and ei.value.path == "proc/diskstats"


def test_live_matches_sys_block():
    root = LiveRoot()
    d = diskstats.read(root)
    assert d.devices, "no block devices on this machine"
    seen = 0
    for name in os.listdir("/sys/block"):
        dev = d.devices.get(name)
        assert dev is not None, name
        # /sys/block/NAME/dev is "major:minor": an independent route to the device numbers
        major, minor = open(f"/sys/block/{name}/dev").read().strip().split(":")
        assert (dev.major, dev.minor) == (int(major), int(minor))
        vals = [int(x) for x in open(f"/sys/block/{name}/stat").read().split()]
        assert len(vals) + 3 == dev.fields
        # counters only grow between the two reads; idle devices match exactly
        mine = [getattr(dev, a) for a in diskstats._BASE + diskstats._DISCARD + diskstats._FLUSH][:len(vals)]
        for i, (a, b) in enumerate(zip(mine, vals)):
            if i == 8:  # ios_in_progress is a gauge
                continue
            assert a <= b <= a + 10_000_000, (name, i)
        seen += 1
    assert seen
