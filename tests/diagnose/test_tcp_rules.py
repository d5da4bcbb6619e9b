"""tcp.* rules on real kernel text (PCP's bigsys capture) with counters moved by hand.

Every expected number is computed here by hand from the deltas we applied, never read back from
the code under test."""

from __future__ import annotations

import pytest

from tests.diagnose.tcp_helpers import (OWN_NS, Machine, add, ev, found, get, tcp_row,
                                        tcp_table)

ALL_TCP = ("tcp.retransmission-rate", "tcp.listen-overflow", "tcp.syn-flood",
           "tcp.close-wait-leak", "tcp.time-wait-pressure", "tcp.fin-wait2",
           "tcp.memory-pressure", "tcp.buffer-config")


def _traffic(m: Machine, out: int, retrans: int, fast: int = 0, rto: int = 0):
    m.net["snmp"] = add(add(m.net["snmp"], "Tcp", "OutSegs", out), "Tcp", "RetransSegs", retrans)
    m.net["netstat"] = add(add(m.net["netstat"], "TcpExt", "TCPFastRetrans", fast),
                           "TcpExt", "TCPTimeouts", rto)


def test_at_rest_every_rule_looks_and_none_fires(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    _traffic(m, 20000, 10, fast=10)  # 0.05 %: a healthy busy server
    m.snap()
    rep = m.check()
    assert not rep.findings, [f.id for f in rep.findings]
    looked = {r for r in ALL_TCP} - {n.rule for n in rep.not_evaluated}
    assert looked == set(ALL_TCP), rep.not_evaluated


def test_retransmission_rate_warning_with_hand_computed_share(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    _traffic(m, 10000, 300, fast=250, rto=20)
    m.snap()
    (f,) = found(m.check(), "tcp.retransmission-rate")
    assert f.severity == "warning"
    assert ev(f, "retransmitted").value == pytest.approx(300 / 10000 * 100)  # 3.0 %
    assert ev(f, "fast retransmits").value == 250
    assert ev(f, "timeouts (RTO)").value == 20
    # since boot, by hand from the corpus's own counters plus ours
    base_out, base_re = get(m.net["snmp"], "Tcp", "OutSegs"), get(m.net["snmp"], "Tcp", "RetransSegs")
    assert ev(f, "since boot").value == pytest.approx(base_re / base_out * 100, abs=1e-3)
    assert "fast retransmits" in f.explanation


def test_retransmission_rate_critical_and_worst_interval(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    _traffic(m, 10000, 50)  # 0.5 %
    m.snap()
    _traffic(m, 4000, 400, rto=300)  # 10 %: the worst interval decides
    m.snap()
    (f,) = found(m.check(), "tcp.retransmission-rate")
    assert f.severity == "critical"
    assert ev(f, "retransmitted").value == pytest.approx(10.0)
    assert ev(f, "over the window").value == pytest.approx(450 / 14000 * 100, abs=1e-3)
    assert "timeouts" in f.explanation


def test_retransmission_rate_needs_enough_segments(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    _traffic(m, 100, 60)  # 60 % of almost nothing: keepalives and SYN retries on an idle host
    m.snap()
    assert not found(m.check(), "tcp.retransmission-rate")


def test_retransmission_rate_counter_reset_is_not_a_rate(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    m.net["snmp"] = add(m.net["snmp"], "Tcp", "RetransSegs", -5)  # went back: a reset
    m.net["snmp"] = add(m.net["snmp"], "Tcp", "OutSegs", 10000)
    m.snap()
    assert not found(m.check(), "tcp.retransmission-rate")


LISTEN, ESTAB, TIME_WAIT, CLOSE_WAIT, FIN_WAIT2, SYN_RECV = 0x0A, 0x01, 0x06, 0x08, 0x05, 0x03
CONTAINER_NS = 4026532500


def test_listen_overflow_in_another_namespace_names_listener_pid_and_netns(tmp_path):
    """The overflow happens inside a container's namespace: our own /proc/net/netstat does not
    move; /proc/200/net/netstat does. The finding names that namespace, the listener whose
    accept queue is at its maximum, and its process."""
    m = Machine(tmp_path)
    m.sysctls["net/core/somaxconn"] = "128"
    own_tcp = m.net["tcp"]
    cont = {k: v for k, v in m.net.items()}
    cont["tcp"] = tcp_table([tcp_row(0, "0.0.0.0", 8080, "0.0.0.0", 0, LISTEN, rx=129,
                                     inode=777001)])
    m.process(1, OWN_NS, "init", net={**m.net, "tcp": own_tcp})
    m.process(200, CONTAINER_NS, "slowsrv", inodes=[777001], net=cont)
    m.snap()
    cont["netstat"] = add(add(cont["netstat"], "TcpExt", "ListenOverflows", 37),
                          "TcpExt", "ListenDrops", 37)
    m.snap()
    rep = m.check()
    fs = found(rep, "tcp.listen-overflow")
    assert len(fs) == 1, [(f.subject, f.evidence) for f in fs]
    f = fs[0]
    assert f.subject.netns == f"net:[{CONTAINER_NS}]"
    assert f.subject.socket == "0.0.0.0:8080"
    assert f.subject.pid == 200 and f.subject.comm == "slowsrv"
    assert ev(f, "ListenOverflows").value == 37
    assert ev(f, "ListenOverflows").source == "/proc/200/net/netstat"
    assert ev(f, "accept queue").value == 129
    assert any(a.kind == "sysctl" and a.name == "net.core.somaxconn" and a.current == "128"
               and a.recommended == "4096" for a in f.actions)
    assert "tcp_abort_on_overflow" in f.explanation


def test_listen_overflow_quiet_when_counters_do_not_move(tmp_path):
    m = Machine(tmp_path)
    m.net["netstat"] = add(m.net["netstat"], "TcpExt", "ListenOverflows", 5000)  # long ago
    m.snap()
    m.snap()
    assert not found(m.check(), "tcp.listen-overflow")


def test_syn_flood(tmp_path):
    m = Machine(tmp_path)
    m.net["tcp"] = tcp_table([tcp_row(0, "0.0.0.0", 80, "0.0.0.0", 0, LISTEN, inode=5)] + [
        tcp_row(i + 1, "10.0.0.1", 80, f"192.0.2.{i % 250 + 1}", 40000 + i, SYN_RECV)
        for i in range(300)] + [tcp_row(301, "0.0.0.0", 443, "0.0.0.0", 0, LISTEN, inode=6)])
    m.net["netstat"] = add(m.net["netstat"], "TcpExt", "TCPReqQFullDrop", 0)  # 3.10 lacks it
    m.snap()
    m.net["netstat"] = add(add(m.net["netstat"], "TcpExt", "SyncookiesSent", 900),
                           "TcpExt", "TCPReqQFullDrop", 250)
    m.snap()
    (f,) = found(m.check(), "tcp.syn-flood")
    assert ev(f, "SyncookiesSent").value == pytest.approx(900.0)  # per second over 1 s
    assert ev(f, "SYN_RECV sockets").value == 300
    assert f.severity == "critical"  # 250 drops/s
    assert any(a.kind == "sysctl" and a.name == "net.ipv4.tcp_max_syn_backlog" for a in f.actions)
    # the listener whose SYN queue holds the 300 requests (port 80, wildcard address) is named
    assert f.subject.socket == "0.0.0.0:80"
    assert ev(f, "SYN queue of 0.0.0.0:80").value == 300


def test_close_wait_leak_names_the_process(tmp_path):
    m = Machine(tmp_path)
    rows = [tcp_row(0, "0.0.0.0", 9000, "0.0.0.0", 0, LISTEN, inode=900)]
    rows += [tcp_row(i + 1, "10.0.0.1", 9000, "10.0.0.9", 50000 + i, CLOSE_WAIT, rx=1,
                     inode=901 + i) for i in range(20)]
    m.net["tcp"] = tcp_table(rows)
    m.process(300, OWN_NS, "leaky", inodes=[900] + [901 + i for i in range(30)])
    m.snap()
    rows += [tcp_row(i + 21, "10.0.0.1", 9000, "10.0.0.9", 50020 + i, CLOSE_WAIT, rx=1,
                     inode=921 + i) for i in range(10)]
    m.net["tcp"] = tcp_table(rows)
    m.procs[300]["net"] = None
    m.snap()
    (f,) = found(m.check(), "tcp.close-wait-leak")
    assert f.subject.pid == 300 and f.subject.comm == "leaky"
    assert ev(f, "CLOSE_WAIT sockets").value == 30
    assert ev(f, "growth").value == 10
    assert ev(f, "peers").value == "10.0.0.9 (30)"


def test_close_wait_turned_over_is_quiet(tmp_path):
    """A server that closes late: 20 CLOSE_WAIT sockets in each snapshot, but never the same."""
    m = Machine(tmp_path)
    for k in range(2):
        m.net["tcp"] = tcp_table([tcp_row(i, "10.0.0.1", 9000, "10.0.0.9", 50000 + i + 100 * k,
                                          CLOSE_WAIT, inode=1000 + i + 100 * k) for i in range(20)])
        m.procs = {}
        m.process(300, OWN_NS, "busy", inodes=[1000 + i + 100 * k for i in range(20)])
        m.snap()
    assert not found(m.check(), "tcp.close-wait-leak")


def test_time_wait_ports_to_one_destination(tmp_path):
    m = Machine(tmp_path)
    m.sysctls["net/ipv4/ip_local_port_range"] = "60000\t60999"  # 1,000 ports
    m.net["tcp"] = tcp_table([tcp_row(i, "10.0.0.1", 60000 + i, "10.0.0.2", 5432, TIME_WAIT)
                              for i in range(950)])
    m.net["sockstat"] = m.net["sockstat"].replace("tw 0", "tw 950")
    m.snap()
    m.snap()
    (f,) = found(m.check(), "tcp.time-wait-pressure")
    assert f.severity == "critical"  # 95 % of the range
    assert ev(f, "ports to 10.0.0.2:5432").value == 950
    assert f.subject.socket == "10.0.0.2:5432"
    assert any(a.kind == "sysctl" and a.name == "net.ipv4.tcp_tw_reuse" and a.recommended == "1"
               for a in f.actions)


def test_time_wait_overflow_moved(tmp_path):
    m = Machine(tmp_path)
    m.net["netstat"] = add(m.net["netstat"], "TcpExt", "TCPTimeWaitOverflow", 0)
    m.snap()
    m.net["netstat"] = add(m.net["netstat"], "TcpExt", "TCPTimeWaitOverflow", 12)
    m.snap()
    (f,) = found(m.check(), "tcp.time-wait-pressure")
    assert ev(f, "TCPTimeWaitOverflow").value == 12


def test_fin_wait2(tmp_path):
    m = Machine(tmp_path)
    m.net["tcp"] = tcp_table([tcp_row(i, "10.0.0.1", 20000 + i, "10.0.0.3", 80, FIN_WAIT2)
                              for i in range(1200)])
    m.snap()
    m.snap()
    (f,) = found(m.check(), "tcp.fin-wait2")
    assert ev(f, "FIN_WAIT2 sockets").value == 1200
    assert any(a.name == "net.ipv4.tcp_fin_timeout" and a.recommended == "15" for a in f.actions)


def test_memory_pressure(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    # tcp_mem pressure 251912 pages: 240000 is 95 % of it
    m.net["sockstat"] = m.net["sockstat"].replace("mem 1", "mem 240000")
    m.net["netstat"] = add(m.net["netstat"], "TcpExt", "TCPMemoryPressures", 3)
    m.snap()
    (f,) = found(m.check(), "tcp.memory-pressure")
    assert f.severity == "warning"
    assert ev(f, "TCP memory").value == 240000
    assert ev(f, "TCPMemoryPressures").value == 3
    acts = [a for a in f.actions if a.kind == "sysctl"]
    assert acts[0].recommended == "377868 503824 755736"


def test_memory_pressure_counted_in_another_namespace(tmp_path):
    """tcp_mem is machine-wide but TCPMemoryPressures is counted in the namespace of the socket
    that hit it: a slow reader in a container moves only /proc/PID/net/netstat there. The
    evidence sums every namespace (3 + 20), not ksight's own alone (3)."""
    m = Machine(tmp_path)
    cont = {k: v for k, v in m.net.items()}
    m.process(1, OWN_NS, "init", net=m.net)
    m.process(200, CONTAINER_NS, "reader", net=cont)
    m.snap()
    m.net["sockstat"] = m.net["sockstat"].replace("mem 1", "mem 240000")
    m.net["netstat"] = add(m.net["netstat"], "TcpExt", "TCPMemoryPressures", 3)
    cont["netstat"] = add(cont["netstat"], "TcpExt", "TCPMemoryPressures", 20)
    m.snap()
    (f,) = found(m.check(), "tcp.memory-pressure")
    assert ev(f, "TCPMemoryPressures").value == 23


def test_memory_pressure_critical_near_high(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    m.net["sockstat"] = m.net["sockstat"].replace("mem 1", "mem 370000")  # 98 % of 377868
    m.snap()
    (f,) = found(m.check(), "tcp.memory-pressure")
    assert f.severity == "critical"


def test_buffer_config_autotuning_off(tmp_path):
    m = Machine(tmp_path)
    m.sysctls["net/ipv4/tcp_moderate_rcvbuf"] = "0"
    m.snap()
    m.snap()
    (f,) = found(m.check(), "tcp.buffer-config")
    assert any(a.name == "net.ipv4.tcp_moderate_rcvbuf" and a.recommended == "1" for a in f.actions)


def test_malformed_netstat_is_named_not_a_traceback(tmp_path):
    m = Machine(tmp_path)
    m.net["netstat"] = "TcpExt: SyncookiesSent ListenOverflows\nTcpExt: 1\n"
    m.snap()
    m.snap()
    rep = m.check()
    reasons = {n.rule: n.reason for n in rep.not_evaluated}
    assert "tcp.listen-overflow" in reasons and "netstat" in reasons["tcp.listen-overflow"]
    assert not any("internal error" in r for r in reasons.values()), reasons


def _lossy(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    _traffic(m, 10000, 300, fast=300)
    m.snap()
    return m


def test_flows_are_never_traced_from_a_capture(tmp_path, monkeypatch):
    import ksight.trace.recipes.retrans as recipe

    def boom(**kw):
        raise AssertionError("traced while judging a capture")
    monkeypatch.setattr(recipe, "top_flows", boom)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    m = _lossy(tmp_path)
    (f,) = found(m.check(), "tcp.retransmission-rate")
    assert not [e for e in f.evidence if e.name.startswith("flow")]


def test_live_flows_are_kept_for_their_own_namespace(tmp_path, monkeypatch):
    import dataclasses

    import ksight.trace.recipes.retrans as recipe
    from ksight.diagnose.engine import diagnose

    calls = []
    mine = recipe.Flow("10.0.0.1", 1000, "10.0.0.2", 80, "skb", 9, "ESTABLISHED",
                       recipe.Owner(5, "client", "/proc fd scan", 1, f"net:[{OWN_NS}]"))
    other = recipe.Flow("10.0.0.1", 1001, "10.0.0.2", 80, "skb", 50, "ESTABLISHED",
                        recipe.Owner(6, "elsewhere", "/proc fd scan", 2, "net:[4026539999]"))

    def fake(**kw):
        calls.append(kw)
        return (other, mine), None
    monkeypatch.setattr(recipe, "top_flows", fake)
    monkeypatch.setattr("os.geteuid", lambda: 0)
    m = Machine(tmp_path)
    m.process(1, OWN_NS, "init")
    m.snap()
    _traffic(m, 10000, 300, fast=300)
    m.snap()
    live = [dataclasses.replace(s, monotonic=100.0 + i) for i, s in enumerate(m.snaps)]
    from ksight.diagnose.enrich import enrich

    report = diagnose(live, ["tcp"])
    (f,) = found(report, "tcp.retransmission-rate")
    assert not [e for e in f.evidence if e.name.startswith("flow")]  # rules never trace
    assert calls == []
    enrich(report, live=True)  # what `ksight check` does live, after the rules
    (f,) = found(report, "tcp.retransmission-rate")
    flows = [e for e in f.evidence if e.name.startswith("flow")]
    assert [e.name for e in flows] == ["flow 10.0.0.1:1000 -> 10.0.0.2:80"]
    assert flows[0].value == 9 and "client[5]" in flows[0].note
    assert len(calls) == 1 and calls[0]["seconds"] <= 1.0


def test_top_flows_without_root_says_why(monkeypatch):
    from ksight.trace.recipes.retrans import top_flows

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert top_flows() == ((), "tracing needs root")


def test_capture_without_namespace_counters_falls_back_to_the_system_files(tmp_path):
    """A capture made before per-namespace counters: processes in namespaces, but no
    /proc/PID/net/snmp for them; the system /proc/net/snmp is still judged."""
    import shutil

    m = Machine(tmp_path)
    m.process(1, OWN_NS, "init")
    m.snap()
    _traffic(m, 10000, 300, fast=300)
    m.snap()
    for d in ("s0", "s1"):  # what an older capture holds: no /proc/1/net/*
        shutil.rmtree(tmp_path / d / "proc" / "1" / "net")
        shutil.rmtree(tmp_path / d / "proc" / "self")
    from ksight.collect.snapshot import take
    from ksight.diagnose.engine import diagnose, plan_for
    from ksight.fs import DirRoot

    snaps = [take(DirRoot(str(tmp_path / d)), plan=plan_for(["tcp"]), taken_at=1e9 + i)
             for i, d in enumerate(("s0", "s1"))]
    (f,) = found(diagnose(snaps, ["tcp"]), "tcp.retransmission-rate")
    assert ev(f, "retransmitted").value == pytest.approx(3.0)
    assert ev(f, "retransmitted").source == "/proc/net/snmp"


def _with_sockets(snaps, socks):
    import dataclasses

    from ksight.collect.sockets import SocketTable

    return [dataclasses.replace(s, sockets=SocketTable(tuple(socks), True, None, ())) for s in snaps]


def _flow(port, rate, rtt_us, sndbuf):
    from ksight.collect.sockets import Sock

    return Sock("inet", "10.0.0.1", port, "10.0.0.2", 443, "ESTABLISHED", 0, 0, 0, 0, 0, 0,
                100 + port, pid=42, comm="uploader", cwnd=40, rtt_us=rtt_us,
                delivery_rate=rate, sndbuf=sndbuf)


def test_buffer_config_pinned_send_buffer(tmp_path):
    """rtt 50 ms, sndbuf 87,040 (SO_SNDBUF 43,520 doubled by the kernel): at most
    87,040 / 2 / 0.05 = 870,400 bytes/s of payload; the flow delivers 850,000 (98 %)."""
    from ksight.diagnose.engine import diagnose

    m = Machine(tmp_path)
    m.snap()
    m.snap()
    fast_ok = _flow(2, 5_000_000, 50_000, 4_194_304)  # 5 MB/s of 41.9 MB/s allowed: not limited
    snaps = _with_sockets(m.snaps, [_flow(1, 1_850_000, 20_000, 87_040), fast_ok])
    (f,) = found(diagnose(snaps, ["tcp"]), "tcp.buffer-config")
    e = ev(f, "flow 10.0.0.1:1 -> 10.0.0.2:443")
    assert e.value == 1_850_000 and e.threshold == round(87_040 / 2 / 0.02)  # 2,176,000
    assert "pinned" in f.explanation
    assert any(a.kind == "sysctl" and a.name == "net.core.wmem_max" and a.recommended == "4194304"
               for a in f.actions)
    assert not [x for x in f.evidence if x.name.startswith("flow 10.0.0.1:2 ")]
    # the subject is the capped flow and its process (the lab's tcp-buffer-pinned checks it live)
    assert f.subject.socket == "10.0.0.1:1 -> 10.0.0.2:443" and f.subject.pid == 42
    assert f.subject.comm == "uploader"


def test_buffer_config_quiet_when_flows_are_not_buffer_bound(tmp_path):
    from ksight.diagnose.engine import diagnose

    m = Machine(tmp_path)
    m.snap()
    m.snap()
    snaps = _with_sockets(m.snaps, [_flow(1, 1_000_000, 20_000, 87_040),  # 46 % of its cap
                                    _flow(2, 900_000, 500, 87_040)])  # loopback-like rtt
    assert not found(diagnose(snaps, ["tcp"]), "tcp.buffer-config")
