import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources import netclass, netdev
from tests.conftest import corpus_root


def test_procfs_corpus():
    # numbers as printed in procfs/proc/net/dev (no owner assertion in EXPECTED.md)
    d = netdev.read(corpus_root("procfs"))
    assert list(d.interfaces) == ["vethf345468", "lo", "docker0", "eth0"]
    lo = d.interfaces["lo"]
    assert (lo.rx_bytes, lo.rx_packets, lo.tx_bytes, lo.tx_packets) == \
        (1664039048, 1566805, 1664039048, 1566805)
    eth0 = d.interfaces["eth0"]
    assert (eth0.rx_bytes, eth0.tx_bytes, eth0.tx_packets, eth0.tx_compressed) == \
        (874354587, 563352563, 732147, 0)


def test_pcp_capture():
    d = netdev.read(corpus_root("pcp", "unpacked", "procnet-4.15.14-root-001"))
    tun = d.interfaces["tun0"]
    assert (tun.rx_bytes, tun.tx_bytes, tun.tx_drop) == (110717658, 120529230, 46)


def test_wide_counter_without_space_after_colon():
    d = netdev.parse("Inter-| x\n face |y\n  eth0:874354587 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n")
    e = d.interfaces["eth0"]
    assert e.rx_bytes == 874354587 and e.tx_compressed == 15 and e.tx_colls == 13


def test_live_matches_sysfs_statistics():
    # two kernel interfaces for the same counters: /proc/net/dev then sysfs, read in that order,
    # so sysfs can only be equal or ahead
    root = LiveRoot()
    d = netdev.read(root)
    nc = netclass.read(root)
    assert "lo" in d.interfaces
    for name, st in d.interfaces.items():
        if name not in nc.interfaces or not nc.interfaces[name].statistics:
            continue
        sysfs = nc.interfaces[name].statistics
        assert 0 <= sysfs["rx_bytes"] - st.rx_bytes < 10_000_000
        assert 0 <= sysfs["tx_packets"] - st.tx_packets < 100_000
        assert sysfs["rx_dropped"] >= st.rx_drop


HDR = "Inter-| x\n face |y\n"


@pytest.mark.parametrize("text", [
    "", HDR, HDR + "  lo: 1 2 3\n", HDR + "  lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n",
    HDR + "garbage\n", HDR + "  lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  eth0: 5 6",
])
def test_bad_input(text):
    with pytest.raises(ParseError) as ei:
        netdev.parse(text)
    assert ei.value.path == "proc/net/dev"
