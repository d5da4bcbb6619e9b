"""Per-namespace TCP counters: /proc/PID/net/{snmp,netstat,sockstat} of one process per netns."""

from __future__ import annotations

import os

from ksight.collect.netns_counters import collect, read_ns
from ksight.collect.plan import Needs, Plan
from ksight.diagnose.engine import plan_for
from ksight.fs import DirRoot
from tests.conftest import corpus

NET = ("pcp", "unpacked", "bigsys-root-hpbl920gen8", "proc", "net")


class _Table:
    def __init__(self, ns_pids):
        self.ns_pids = ns_pids


def _tree(tmp_path, pids: dict[int, dict[str, str]], own: int | None = 4026531992):
    for pid, files in pids.items():
        d = tmp_path / "proc" / str(pid) / "net"
        d.mkdir(parents=True)
        for name, text in files.items():
            (d / name).write_text(text)
    if own is not None:
        (tmp_path / "proc" / "self" / "ns").mkdir(parents=True)
        os.symlink(f"net:[{own}]", tmp_path / "proc" / "self" / "ns" / "net")
    return DirRoot(str(tmp_path))


def _real():
    return {n: corpus(*NET, n).read_text() for n in ("snmp", "netstat", "sockstat", "dev")}


def test_counters_of_each_namespace_through_one_of_its_processes(tmp_path):
    real = _real()
    root = _tree(tmp_path, {10: real, 20: {**real, "sockstat": real["sockstat"].replace(
        "tw 0", "tw 77")}})
    got, missing = collect(root, _Table(((4026531992, (10,)), (4026532500, (20,)))))
    assert not missing
    assert got.own == 4026531992
    # PCP's bigsys snmp: "Tcp: ... OutSegs" read by hand from the corpus line
    head, vals = [ln.split() for ln in real["snmp"].splitlines() if ln.startswith("Tcp:")][:2]
    assert got.get(4026531992).snmp.get("Tcp", "OutSegs") == int(vals[head.index("OutSegs")])
    assert got.get(4026532500).sockstat.get("TCP", "tw") == 77
    assert got.get(4026532500).pid == 20
    # PCP's bigsys /proc/net/dev: eth0 received 14948502 bytes (the corpus line)
    assert got.get(4026531992).netdev.interfaces["eth0"].rx_bytes == 14948502


def test_a_process_that_exited_is_skipped_for_the_next_of_its_namespace(tmp_path):
    root = _tree(tmp_path, {21: _real()})  # 20 is gone
    got = read_ns(root, 4026532500, (20, 21))
    assert got.pid == 21 and got.snmp is not None and not got.missing


def test_malformed_file_is_named_and_the_others_kept(tmp_path):
    real = _real()
    root = _tree(tmp_path, {30: {**real, "netstat": "TcpExt: A B\nTcpExt: 1\n"}})
    got, missing = collect(root, _Table(((4026532600, (30,)),)))
    ns = got.get(4026532600)
    assert ns.netstat is None and ns.snmp is not None and ns.sockstat is not None
    assert "malformed" in ns.missing["netstat"]
    assert any(m.source == "netns_counters.netstat" and "4026532600" in m.reason for m in missing)


def test_no_namespace_says_so(tmp_path):
    root = _tree(tmp_path, {}, own=None)
    got, missing = collect(root, _Table(()))
    assert not got.namespaces and got.own is None
    assert missing and "no network namespace" in missing[0].reason


def test_planned_only_for_the_tcp_and_net_areas():
    assert plan_for(["tcp"]).netns_counters and plan_for(["tcp"]).sockets
    assert not plan_for(["memory"]).netns_counters
    assert not plan_for(["pagecache"]).netns_counters
    p = Plan.of([Needs(netns_counters=True)])
    assert p.netns_counters and p.sockets and p.pids is None
    assert Plan().merge(p).netns_counters
