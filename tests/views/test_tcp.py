"""views.tcp and `ksight tcp` on real kernel text (PCP's bigsys /proc/net) with hand-set
counters and sockets; numbers compared with hand arithmetic."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from ksight.render.jsonable import jsonable
from ksight.render.tcp_text import render, render_connections
from ksight.views import tcp
from tests.diagnose.tcp_helpers import (LISTEN_STATE, Machine, add, tcp_row, tcp_table)


def _machine(tmp_path):
    m = Machine(tmp_path)
    m.net["tcp"] = tcp_table([
        tcp_row(0, "0.0.0.0", 80, "0.0.0.0", 0, LISTEN_STATE, rx=3, inode=10),
        tcp_row(1, "10.0.0.1", 80, "10.0.0.7", 40001, 0x01, tx=100, rx=5, inode=11),
        tcp_row(2, "10.0.0.1", 80, "10.0.0.8", 40002, 0x08, rx=1, inode=12),
        tcp_row(3, "10.0.0.1", 41000, "10.0.0.9", 5432, 0x06),
        tcp_row(4, "10.0.0.1", 41001, "10.0.0.9", 5432, 0x06),
    ])
    m.process(77, 4026531992, "web", inodes=[10, 11, 12])
    return m


def test_overview_rates_by_hand(tmp_path):
    m = _machine(tmp_path)
    m.snap()
    m.net["snmp"] = add(add(m.net["snmp"], "Tcp", "OutSegs", 8000), "Tcp", "RetransSegs", 120)
    m.procs[77]["net"] = None
    m.snap()
    m.net["snmp"] = add(add(m.net["snmp"], "Tcp", "OutSegs", 2000), "Tcp", "RetransSegs", 80)
    m.snap()
    ov = tcp.overview(m.snaps)
    (ns,) = ov.namespaces
    r = ns.retrans
    assert r.pct_per_interval == pytest.approx((120 / 8000 * 100, 80 / 2000 * 100))
    assert r.pct == pytest.approx(200 / 10000 * 100)
    assert r.peak_pct == pytest.approx(4.0) and r.peak_interval == 1
    assert ov.census.counts == {"LISTEN": 1, "ESTABLISHED": 1, "CLOSE_WAIT": 1, "TIME_WAIT": 2}
    (lst,) = ov.listeners
    assert (lst.socket, lst.accept_queue, lst.pid, lst.comm) == ("0.0.0.0:80", 3, 77, "web")
    (d,) = ov.ports.destinations  # two TIME_WAIT ports towards 10.0.0.9:5432 in 32768-60999
    assert (d.remote_addr, d.remote_port, d.ports_in_use, d.time_wait) == ("10.0.0.9", 5432, 2, 2)
    assert ov.ports.size == 60999 - 32768 + 1
    out = io.StringIO()
    render(ov, out)
    text = out.getvalue()
    assert "2.00 %" in text and "0.0.0.0:80" in text and "web[77]" in text
    json.dumps(jsonable(ov))


def test_one_snapshot_has_no_rates_and_says_so(tmp_path):
    m = _machine(tmp_path)
    m.snap()
    ov = tcp.overview(m.snaps)
    assert ov.namespaces[0].retrans.pct is None
    assert any("one snapshot" in n for n in ov.notes)
    render(ov, io.StringIO())


def test_connections_filters(tmp_path):
    m = _machine(tmp_path)
    snap = m.snap()
    rep = tcp.connections(snap, port=5432)
    assert [c.state for c in rep.rows] == ["TIME_WAIT", "TIME_WAIT"] and rep.total == 5
    rep = tcp.connections(snap, pid=77)
    assert [c.state for c in rep.rows] == ["ESTABLISHED", "CLOSE_WAIT", "LISTEN"]
    est = rep.rows[0]
    assert (est.send_q, est.recv_q, est.remote) == (100, 5, "10.0.0.7:40001")
    assert tcp.connections(snap, states=("CLOSE_WAIT",)).rows[0].remote == "10.0.0.8:40002"
    out = io.StringIO()
    render_connections(rep, out)
    assert "web[77]" in out.getvalue()


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "ksight", "tcp", *argv], capture_output=True,
                          text=True, timeout=60)


def test_cli_from_a_tree_text_and_json(tmp_path):
    m = _machine(tmp_path)
    m.snap()
    res = _cli("--from", str(tmp_path / "s0"))
    assert res.returncode == 0, res.stderr
    assert "Connection states: 5 sockets" in res.stdout
    res = _cli("--from", str(tmp_path / "s0"), "--connections", "--port", "80", "--json")
    rows = json.loads(res.stdout)["connections"]["rows"]
    assert {r["state"] for r in rows} == {"LISTEN", "ESTABLISHED", "CLOSE_WAIT"}


def test_cli_errors_are_messages_not_tracebacks(tmp_path):
    for argv, words in ((("-p", "1"), "filter --connections"),
                        (("--pcap", str(tmp_path / "none.pcap"), "--connections"), "--pcap"),
                        (("--from", str(tmp_path / "missing")), "")):
        res = _cli(*argv)
        assert res.returncode != 0 and "Traceback" not in res.stderr, res.stderr
        assert words in res.stderr


def test_help_ends_with_examples():
    res = _cli("--help")
    assert res.returncode == 0
    assert "examples:" in res.stdout and "ksight tcp --connections -p 1234" in res.stdout
