"""`ksight sysctl --area tcp`: values from a real capture (tests/fixtures/captures/vm-6.18.tar.zst,
the values below read from its 0001/proc/sys files with tar, not with ksight), judgements by
hand on values an old or mis-tuned kernel has, absent and unreadable settings, route metrics."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from ksight.sources import sysctl as sysctl_src
from ksight.views import sysctl_audit as sa
from tests.conftest import FIXTURES

CAPTURE = FIXTURES / "captures" / "vm-6.18.tar.zst"

# `tar -xf vm-6.18.tar.zst 0001/proc/sys; cat ...` (tabs shown as spaces)
IN_CAPTURE = {
    "net.ipv4.tcp_syn_retries": "6", "net.ipv4.tcp_synack_retries": "5",
    "net.ipv4.tcp_max_syn_backlog": "2048", "net.ipv4.tcp_syncookies": "1",
    "net.core.somaxconn": "4096", "net.ipv4.tcp_abort_on_overflow": "0",
    "net.core.netdev_budget": "300", "net.ipv4.tcp_fin_timeout": "60",
    "net.ipv4.tcp_max_tw_buckets": "131072", "net.ipv4.tcp_tw_reuse": "2",
    "net.ipv4.tcp_rmem": "4096 131072 33554432", "net.ipv4.tcp_wmem": "4096 16384 4194304",
    "net.core.rmem_max": "4194304", "net.core.wmem_max": "4194304",
    "net.ipv4.tcp_mem": "287901 383868 575802", "net.ipv4.tcp_moderate_rcvbuf": "1",
    "net.ipv4.ip_local_port_range": "32768 60999",
}


def ksight(*args):
    p = subprocess.run([sys.executable, "-m", "ksight", "sysctl", *args], capture_output=True,
                       text=True, timeout=60)
    return p


def test_capture_values_and_verdicts():
    p = ksight("--area", "tcp", "--json", "--from", str(CAPTURE))
    assert p.returncode == 1, p.stderr           # two settings to review
    doc = json.loads(p.stdout)
    knobs = {k["name"]: k for k in doc["audit"]["knobs"]}
    for name, value in IN_CAPTURE.items():
        assert knobs[name]["current"] == value, name
    # 2048 half-open connections against an accept queue of 4096
    assert knobs["net.ipv4.tcp_max_syn_backlog"]["status"] == "review"
    assert knobs["net.ipv4.tcp_max_syn_backlog"]["set_to"] == "4096"
    # rmem_max 4 MiB under the 32 MiB autotuning max: SO_RCVBUF users get less
    assert knobs["net.core.rmem_max"]["status"] == "review"
    assert knobs["net.core.rmem_max"]["set_to"] == "33554432"
    assert {k for k, v in knobs.items() if v["status"] == "review"} == {
        "net.ipv4.tcp_max_syn_backlog", "net.core.rmem_max"}
    # Linux 6.18 has no tcp_tw_recycle (removed in 4.12)
    tw = knobs["net.ipv4.tcp_tw_recycle"]
    assert tw["status"] == "absent" and tw["current"] is None and "4.12" in tw["note"]
    # tcp_mem in pages of 4 KiB: 383868 x 4096 = 1499.5 MiB
    assert "pressure 1499 MiB" in knobs["net.ipv4.tcp_mem"]["note"]
    # 60999 - 32768 + 1 = 28232 ports, / 60 s = 470 connections/s
    assert "28232 ports" in knobs["net.ipv4.ip_local_port_range"]["note"]
    assert "~470 new" in knobs["net.ipv4.ip_local_port_range"]["note"]
    assert doc["audit"]["routes"] is None and "capture" in doc["audit"]["routes_note"]


def test_capture_text():
    p = ksight("--area", "tcp", "--from", str(CAPTURE))
    assert p.returncode == 1, p.stderr
    assert "sysctl -w net.ipv4.tcp_max_syn_backlog='4096'" in p.stdout
    assert "not on this kernel: removed in Linux 4.12" in p.stdout
    assert "route metrics (initcwnd) are not in /proc" in p.stdout


def _by_name(a):
    return {k.name: k for k in a.knobs}


def test_an_old_or_mistuned_kernel():
    s = sysctl_src.parse({
        "net.core.somaxconn": "128",                 # before Linux 5.4
        "net.ipv4.tcp_max_syn_backlog": "128",
        "net.ipv4.tcp_syncookies": "0",
        "net.ipv4.tcp_tw_recycle": "1",              # a kernel before 4.12
        "net.ipv4.tcp_abort_on_overflow": "1",
        "net.ipv4.tcp_rmem": "4096\t87380\t1048576",
        "net.ipv4.tcp_moderate_rcvbuf": "0",
        "net.ipv4.ip_local_port_range": "50000\t51000",
        "net.ipv4.tcp_max_tw_buckets": "4096",
        "net.ipv4.tcp_mem": "1000\t2000\t4000",
        "net.ipv4.tcp_syn_retries": "6",
    })
    k = _by_name(sa.audit("tcp", s))
    review = {n for n, r in k.items() if r.status == "review"}
    assert review == {"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_syncookies",
                      "net.ipv4.tcp_tw_recycle", "net.ipv4.tcp_abort_on_overflow",
                      "net.ipv4.tcp_rmem", "net.ipv4.tcp_moderate_rcvbuf",
                      "net.ipv4.ip_local_port_range", "net.ipv4.tcp_max_tw_buckets",
                      "net.ipv4.tcp_mem"}
    assert k["net.core.somaxconn"].set_to == "4096"
    assert k["net.ipv4.tcp_tw_recycle"].set_to == "0" and "NAT" in k["net.ipv4.tcp_tw_recycle"].note
    assert k["net.ipv4.tcp_syncookies"].set_to == "1"
    assert k["net.ipv4.ip_local_port_range"].set_to == "1024 65535"
    assert "1001 ports" in k["net.ipv4.ip_local_port_range"].note       # 51000 - 50000 + 1
    assert "max 1024 KiB" in k["net.ipv4.tcp_rmem"].note
    # 2000 pages x 4 KiB = 7.8 MiB of pressure threshold: under 64 MiB
    assert "pressure 8 MiB" in k["net.ipv4.tcp_mem"].note
    assert k["net.ipv4.tcp_syn_retries"].status == "ok"
    # not in the values at all: reported absent, "not on this kernel (or not captured)"
    fin = k["net.ipv4.tcp_fin_timeout"]
    assert fin.status == "absent" and fin.current is None and "not on this kernel" in fin.note


def test_unreadable_and_malformed_are_said():
    s = sysctl_src.parse({"net.ipv4.tcp_rmem": "4096 lots"},
                         {"net.core.somaxconn": "proc/sys/net/core/somaxconn: permission denied"})
    k = _by_name(sa.audit("tcp", s))
    assert k["net.core.somaxconn"].status == "unreadable"
    assert "permission denied" in k["net.core.somaxconn"].note
    assert k["net.ipv4.tcp_rmem"].status == "unreadable" and "malformed" in k["net.ipv4.tcp_rmem"].note
    buf = io.StringIO()
    from ksight.render.sysctl_text import render

    render(sa.audit("tcp", s), buf, verbose=True)   # renders with nothing but holes
    assert "permission denied" in buf.getvalue()


ROUTES = """\
default via 192.0.2.1 dev eth0 proto dhcp src 192.0.2.2 metric 100 initcwnd 32 initrwnd 64
10.1.0.0/16 via 192.0.2.9 dev eth0 initcwnd lock 4
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.2
10.9.0.0/16 dev wg0 table 100 initcwnd 20
fe80::/64 dev eth0 proto kernel metric 256 pref medium
multicast ff00::/8 dev eth0 table local proto kernel metric 256 pref medium
"""


def test_routes():
    rs = sa.parse_routes(ROUTES)
    assert [(r.destination, r.dev, r.table, r.initcwnd, r.initrwnd) for r in rs] == [
        ("default", "eth0", "main", 32, 64), ("10.1.0.0/16", "eth0", "main", 4, None),
        ("192.0.2.0/24", "eth0", "main", None, None), ("10.9.0.0/16", "wg0", "100", 20, None),
        ("fe80::/64", "eth0", "main", None, None)]
    ra = sa.audit_routes(rs)
    assert ra.status == "review" and "1 route(s)" in ra.note     # the initcwnd 4 one
    ok = sa.audit_routes(sa.parse_routes("default via 192.0.2.1 dev eth0\n"))
    assert ok.status == "ok" and "10 segments" in ok.note


def test_live_and_help():
    p = ksight("--area", "tcp", "--json")
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(p.stdout)
    live = {k["name"]: k for k in doc["audit"]["knobs"]}
    with open("/proc/sys/net/core/somaxconn") as f:
        assert live["net.core.somaxconn"]["current"] == f.read().strip()
    import shutil

    if shutil.which("ip"):
        assert doc["audit"]["routes"] is not None
    else:
        assert "ip" in doc["audit"]["routes_note"]
    h = ksight("--help")
    assert h.returncode == 0 and "examples:" in h.stdout and "--from" in h.stdout
    bad = ksight("--area", "nosuch")
    assert bad.returncode == 3 and "invalid choice" in bad.stderr


@pytest.mark.parametrize("area", sorted(sa.AREAS))
def test_every_knob_is_a_sysctl_ksight_reads(area):
    # a knob outside sources.sysctl.NAMES would never be read live nor captured
    assert {k.name for k in sa.AREAS[area]} <= set(sysctl_src.NAMES)
    assert {k.group for k in sa.AREAS[area]} <= set(sa.GROUPS[area])
