import os

import pytest

from ksight.errors import ParseError
from ksight.fs import DirRoot, LiveRoot
from ksight.sources import netclass
from tests.conftest import corpus_root, corpus_text


def _e2e() -> dict[str, float]:
    out = {}
    for line in corpus_text("node_exporter", "e2e-output.txt").splitlines():
        if line.startswith("node_network_"):
            name, _, val = line.rpartition(" ")
            out[name] = float(val)
    return out


def test_node_exporter_e2e():
    # node_exporter e2e-output.txt, netclass collector (sys/class/net/{bond0,eth0})
    want = _e2e()
    nc = netclass.read(corpus_root("node_exporter"))
    assert {"bond0", "eth0", "dmz", "int"} <= set(nc.interfaces)
    assert "bonding_masters" not in nc.interfaces
    for dev in ("bond0", "eth0"):
        i = nc.interfaces[dev]
        lab = f'{{device="{dev}"}}'
        assert i.mtu == want["node_network_mtu_bytes" + lab]
        assert i.tx_queue_len == want["node_network_transmit_queue_length" + lab]
        assert i.carrier == want["node_network_carrier" + lab]
        assert want["node_network_up" + lab] == (1 if i.operstate == "up" else 0)
    # speed is Mb/s in sysfs, bytes/s in node_exporter; bond0's -1 means unknown (no metric)
    assert nc.interfaces["eth0"].speed_mbps * 1_000_000 / 8 == want['node_network_speed_bytes{device="eth0"}']
    assert nc.interfaces["bond0"].speed_mbps is None
    assert 'node_network_speed_bytes{device="bond0"}' not in want
    assert nc.interfaces["eth0"].statistics == {}  # statistics/* is opt-in


def _procnetdev_lo() -> tuple[int, int]:
    for line in open("/proc/net/dev"):
        if line.strip().startswith("lo:"):
            f = line.split(":", 1)[1].split()
            return int(f[0]), int(f[1])  # rx bytes, rx packets
    raise AssertionError("no lo in /proc/net/dev")


def test_statistics_opt_in_live_against_proc_net_dev():
    # statistics/* only on request; checked against /proc/net/dev (another kernel interface)
    # read just before and just after: the sysfs counters must fall in between
    before = _procnetdev_lo()
    for nc in (netclass.read(LiveRoot(), statistics=True), netclass.read_stats(LiveRoot())):
        lo = nc.interfaces["lo"].statistics
        after = _procnetdev_lo()
        assert before[0] <= lo["rx_bytes"] <= after[0] and before[1] <= lo["rx_packets"] <= after[1]
    assert netclass.read(LiveRoot()).interfaces["lo"].statistics == {}
    old = netclass.STATISTICS
    try:
        netclass.STATISTICS = True  # the module option
        assert "rx_bytes" in netclass.read(LiveRoot()).interfaces["lo"].statistics
    finally:
        netclass.STATISTICS = old


def test_procfs_corpus():
    nc = netclass.read(corpus_root("procfs"))
    eth0 = nc.interfaces["eth0"]
    # values as in procfs/sys/class/net/eth0/{mtu,speed,operstate,tx_queue_len}
    assert (eth0.mtu, eth0.speed_mbps, eth0.operstate, eth0.tx_queue_len) == (1500, 1000, "up", 1000)
    assert eth0.statistics == {}  # not captured


def test_live_loopback():
    nc = netclass.read(LiveRoot(), statistics=True)
    lo = nc.interfaces["lo"]
    assert lo.mtu == int(open("/sys/class/net/lo/mtu").read())
    assert "rx_bytes" in lo.statistics
    assert netclass.read(LiveRoot()).interfaces["lo"].statistics == {}
    assert lo.speed_mbps is None  # lo has no speed (EINVAL)


def _iface(tmp_path, name, **files):
    d = tmp_path / "sys" / "devices" / "virtual" / "net" / name
    (d / "statistics").mkdir(parents=True)
    for k, v in files.items():
        (d / k.replace("__", "/")).write_text(v)
    (tmp_path / "sys" / "class" / "net").mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../devices/virtual/net/{name}", tmp_path / "sys" / "class" / "net" / name)


def test_links_into_devices_and_absent_fields(tmp_path):
    _iface(tmp_path, "veth0", mtu="1500\n", tx_queue_len="1000\n", operstate="down\n",
           speed="-1\n", statistics__rx_bytes="42\n")
    nc = netclass.read(DirRoot(str(tmp_path)), statistics=True)
    v = nc.interfaces["veth0"]
    assert (v.mtu, v.speed_mbps, v.carrier, v.operstate) == (1500, None, None, "down")
    assert v.statistics == {"rx_bytes": 42}


def test_garbage_value(tmp_path):
    _iface(tmp_path, "bad0", mtu="fifteen\n")
    with pytest.raises(ParseError):
        netclass.read(DirRoot(str(tmp_path)))
