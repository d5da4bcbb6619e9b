import subprocess

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot, sysctl_path
from ksight.sources import sysctl
from tests.conftest import corpus, corpus_root, need_tool


def test_names_are_unique_and_dotted():
    assert len(set(sysctl.NAMES)) == len(sysctl.NAMES)
    assert all("." in n and "/" not in n for n in sysctl.NAMES)
    assert "vm.drop_caches" not in sysctl.NAMES  # write-only in effect
    assert (sysctl.MULTI_INT | sysctl.TEXT) <= set(sysctl.NAMES)
    assert set(sysctl.HISTORY) <= set(sysctl.NAMES)


def test_procfs_vm_values():
    # prometheus/procfs vm_test.go (TestVM) asserts these for fixtures/proc/sys/vm
    s = sysctl.read(corpus_root("procfs"))
    assert s.int("vm.min_free_kbytes") == 67584
    assert s.int("vm.watermark_scale_factor") == 10
    assert s.int("vm.watermark_boost_factor") == 15000
    assert s.int("vm.dirty_background_ratio") == 10
    assert s.int("vm.dirty_ratio") == 20
    assert s.int("vm.dirty_bytes") == 0
    assert s.int("vm.dirty_background_bytes") == 0
    assert s.int("vm.dirty_expire_centisecs") == 3000
    assert s.int("vm.dirty_writeback_centisecs") == 500
    assert s.int("vm.swappiness") == 60
    assert s.int("vm.vfs_cache_pressure") == 100
    assert s.int("vm.overcommit_ratio") == 50
    assert s.int("vm.overcommit_memory") == 0
    assert s.int("vm.max_map_count") == 65530
    assert s.int("vm.zone_reclaim_mode") == 0
    assert s.int("vm.panic_on_oom") == 0
    # the fixture predates compaction_proactiveness (5.9) and has no net/ sysctls
    assert s.int("vm.compaction_proactiveness") is None
    assert s.missing["vm.compaction_proactiveness"] == "absent: added in 5.9"
    # the fixture has no proc/sys/net at all: missing from the capture, not "removed in 4.12"
    assert s.missing["net.ipv4.tcp_tw_recycle"] == \
        "missing from the capture: it has no /proc/sys/net/ipv4"
    assert s.missing["net.core.somaxconn"].startswith("missing")
    assert s.ints("net.ipv4.tcp_mem") is None


def test_node_exporter_kernel_values():
    # node_exporter e2e-output.txt: node_sysctl_kernel_threads_max 7801
    s = sysctl.read(corpus_root("node_exporter"))
    assert s.int("kernel.threads-max") == 7801
    # kernel.pid_max is not in e2e-output; compare with the file read directly
    want = int(corpus("node_exporter", "proc", "sys", "kernel", "pid_max").read_text().strip())
    assert s.int("kernel.pid_max") == want


def test_pcp_procsys_pid_max():
    # pcp qa/linux procsys-root-001 holds kernel/pid_max (kernel.all.pid_max); no PCP expected
    # output covers it, so compare with the file read directly
    s = sysctl.read(corpus_root("pcp", "unpacked", "procsys-root-001"))
    p = corpus("pcp", "unpacked", "procsys-root-001", "proc", "sys", "kernel", "pid_max")
    assert s.int("kernel.pid_max") == int(p.read_text().split()[0]) == 65536
    assert s.int("vm.swappiness") is None


def test_multi_int_with_tabs():
    s = sysctl.parse({"net.ipv4.tcp_mem": "287901\t383868\t575802\n",
                      "kernel.printk": "4\t4\t1\t7"})
    assert s.ints("net.ipv4.tcp_mem") == (287901, 383868, 575802)
    assert s.ints("kernel.printk") == (4, 4, 1, 7)
    assert s.text("net.ipv4.tcp_mem") == "287901\t383868\t575802"


def test_text_values_and_unknown_names_kept():
    s = sysctl.parse({"net.ipv4.tcp_available_congestion_control": "reno cubic bbr",
                      "fs.file-max": "whatever"})
    assert s.text("net.ipv4.tcp_available_congestion_control").split() == ["reno", "cubic", "bbr"]
    assert s.text("fs.file-max") == "whatever"


def test_parse_records_every_unread_name_as_missing():
    s = sysctl.parse({"vm.swappiness": "60"})
    assert s.int("vm.swappiness") == 60
    assert set(s.missing) == set(sysctl.NAMES) - {"vm.swappiness"}
    assert s.missing["net.core.netdev_budget_usecs"] == "absent: added in 4.12"
    assert s.missing["vm.watermark_boost_factor"] == "absent: added in 5.0"


def test_permission_reason_kept_not_replaced_by_history():
    s = sysctl.parse({}, {"vm.compaction_proactiveness": "permission denied"})
    assert s.missing["vm.compaction_proactiveness"] == "permission denied"


@pytest.mark.parametrize("name,value", [
    ("vm.swappiness", ""), ("vm.swappiness", "sixty"), ("vm.swappiness", "60 61"),
    ("net.ipv4.tcp_mem", ""), ("net.ipv4.tcp_mem", "1 2 x"),
    ("net.ipv4.tcp_congestion_control", "  "),
])
def test_bad_values(name, value):
    with pytest.raises(ParseError) as ei:
        sysctl.parse({name: value}, strict=True)
    assert ei.value.path == sysctl_path(name)
    # by default one odd value becomes "missing" with the reason, and the others survive
    s = sysctl.parse({name: value, "vm.dirty_ratio": "20"})
    assert s.int("vm.dirty_ratio") == 20
    assert name not in s.values
    assert s.missing[name].startswith("malformed:") and sysctl_path(name) in s.missing[name]


def test_int_on_a_multi_value_is_an_error():
    s = sysctl.parse({"net.ipv4.tcp_mem": "1 2 3"})
    with pytest.raises(ParseError):
        s.int("net.ipv4.tcp_mem")


def test_live_matches_sysctl_command():
    need_tool("sysctl", "procps")
    # procps sysctl(8) reads /proc/sys with its own code; compare every name we could read
    s = sysctl.read(LiveRoot())
    assert len(s.values) + len(s.missing) == len(sysctl.NAMES)
    assert len(s.values) >= 40, s.missing
    for name, value in s.values.items():
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True)
        assert out.returncode == 0, (name, out.stderr)
        want = out.stdout.strip()
        if name in sysctl.TEXT:
            assert value.split() == want.split(), name
        else:
            assert s.ints(name) == tuple(int(t) for t in want.split()), name
    for name in s.missing:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True)
        assert out.returncode != 0, name
