"""Per-namespace sysctls in captures (ksight/netns/<netns>/sysctl.json) and read live inside a
namespace we create (root)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ksight.collect.netns_counters import NS_SYSCTLS, collect, read_sysctls
from tests.collect.test_netns_counters import _real, _Table, _tree
from tests.conftest import IS_ROOT, need_tool

OWN, OTHER = 4026531992, 4026532500


def _doc(tmp_path, netns, doc):
    d = tmp_path / "ksight" / "netns" / str(netns)
    d.mkdir(parents=True)
    (d / "sysctl.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))


def test_replay_takes_the_namespaces_values(tmp_path):
    root = _tree(tmp_path, {10: _real(), 20: _real()})
    _doc(tmp_path, OTHER, {"format": 1, "pid": 20, "values": {
        "net.core.somaxconn": "37", "net.ipv4.ip_local_port_range": "20000\t20999",
        "net.ipv4.tcp_fin_timeout": "not a number", "vm.swappiness": "1"},
        "missing": {"net.ipv4.tcp_tw_reuse": "permission denied"}})
    got, missing = collect(root, _Table(((OWN, (10,)), (OTHER, (20,)))))
    assert not missing
    other = got.get(OTHER).sysctls
    assert other.int("net.core.somaxconn") == 37
    assert other.ints("net.ipv4.ip_local_port_range") == (20000, 20999)
    assert other.text("vm.swappiness") is None  # not a per-namespace sysctl: not taken from here
    assert "malformed" in other.missing["net.ipv4.tcp_fin_timeout"]
    assert other.missing["net.ipv4.tcp_tw_reuse"] == "permission denied"
    assert set(other.missing) <= set(NS_SYSCTLS)
    # ksight's own namespace: the system sysctl source is its value, nothing read per namespace
    assert got.get(OWN).sysctls is None and got.get(OWN).sysctls_why is None


@pytest.mark.parametrize("doc, why", [
    (None, "not in this capture"),
    ("{not json", "malformed"),
    ({"format": 1, "values": ["37"]}, "malformed (no values)"),
    ({"format": 1, "values": {"net.core.somaxconn": 37}}, "malformed (no values)"),
    ("[" * 100_000, "malformed"),
])
def test_replay_without_or_with_bad_values_says_why(tmp_path, doc, why):
    root = _tree(tmp_path, {20: _real()})
    if doc is not None:
        _doc(tmp_path, OTHER, doc)
    sc, reason = read_sysctls(root, OTHER, (20,))
    assert sc is None and why in reason
    got, _ = collect(root, _Table(((OTHER, (20,)),)))
    assert got.get(OTHER).sysctls is None and why in got.get(OTHER).sysctls_why
    assert got.get(OTHER).snmp is not None  # the counters are still there


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="needs root: creates a network namespace")
def test_live_read_inside_a_namespace_we_create(tmp_path):
    """`ip netns exec NS sysctl` (the reference) and ours agree; the host's value differs."""
    from ksight.fs import LiveRoot
    from ksight.fs import netns as fsns
    from ksight.fs.recording import RecordingRoot

    ip = need_tool("ip", "creates the network namespace")
    name = f"kslsc{os.getpid()}"
    subprocess.run([ip, "netns", "add", name], check=True, timeout=10)
    proc = None
    try:
        with open("/proc/sys/net/ipv4/tcp_fin_timeout") as f:
            host = int(f.read())
        mine = 23 if host != 23 else 24
        subprocess.run([ip, "netns", "exec", name, "sh", "-c",
                        f"echo {mine} > /proc/sys/net/ipv4/tcp_fin_timeout"],
                       check=True, timeout=10)
        ref = subprocess.run([ip, "netns", "exec", name, "cat",
                              "/proc/sys/net/core/somaxconn"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        proc = subprocess.Popen([ip, "netns", "exec", name, "sleep", "30"])
        ino = os.stat(f"/run/netns/{name}").st_ino
        for _ in range(50):  # until `ip netns exec` has entered it and exec'd sleep
            try:
                if os.stat(f"/proc/{proc.pid}/ns/net").st_ino == ino:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        rec = RecordingRoot(LiveRoot())
        sc, why = read_sysctls(rec, ino, (999_999_999, proc.pid))  # the first is no process
        assert why is None, why
        assert sc.int("net.ipv4.tcp_fin_timeout") == mine
        assert sc.text("net.core.somaxconn") == ref
        # our own thread never moved: it still sees the host's value
        assert fsns.read_sysctls(["net.ipv4.tcp_fin_timeout"]) == {
            "net.ipv4.tcp_fin_timeout": str(host)}
        # and the recording holds what replay needs
        doc = json.loads(rec.files[f"ksight/netns/{ino}/sysctl.json"])
        assert doc["values"]["net.ipv4.tcp_fin_timeout"] == str(mine) and doc["pid"] == proc.pid
        # no /proc/sys file of the namespace was recorded as if it were the host's
        assert not [p for p in rec.files if p.startswith("proc/sys/")]
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)
        subprocess.run([ip, "netns", "del", name], timeout=10)
