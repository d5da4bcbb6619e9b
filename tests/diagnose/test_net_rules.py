"""net.* rules on real /proc/net/dev and /proc/net/softnet_stat text (PCP's bigsys capture),
with counters moved by hand."""

from __future__ import annotations

import pytest

from tests.diagnose.tcp_helpers import Machine, ev, found


def bump_dev(text: str, iface: str, column: int, delta: int) -> str:
    """Add delta to one of the 16 counters of an interface's /proc/net/dev line."""
    out = []
    for line in text.split("\n"):
        name, sep, rest = line.partition(":")
        if sep and name.strip() == iface:
            vals = rest.split()
            vals[column] = str(int(vals[column]) + delta)
            line = f"{name}: " + " ".join(vals)
        out.append(line)
    return "\n".join(out)


TX_PACKETS, TX_DROP = 9, 11  # columns after the colon: rx 0-7, tx 8-15


def bump_softnet(text: str, cpu: int, column: int, delta: int) -> str:
    lines = text.split("\n")
    vals = lines[cpu].split()
    vals[column] = f"{int(vals[column], 16) + delta:08x}"
    lines[cpu] = " ".join(vals)
    return "\n".join(lines)


def test_net_quiet_at_rest(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    m.net["dev"] = bump_dev(m.net["dev"], "eth0", TX_PACKETS, 50000)
    m.net["softnet_stat"] = bump_softnet(m.net["softnet_stat"], 0, 0, 40000)
    m.net["softnet_stat"] = bump_softnet(m.net["softnet_stat"], 0, 2, 3)  # a few squeezes: normal
    m.snap()
    rep = m.check(("net",))
    assert not rep.findings and rep.rules_run == 2, (rep.findings, rep.not_evaluated)


def test_tx_drops_names_the_interface_and_txqueuelen(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    m.net["dev"] = bump_dev(bump_dev(m.net["dev"], "eth0", TX_PACKETS, 10000), "eth0", TX_DROP, 40)
    m.snap()
    (f,) = found(m.check(("net",)), "net.tx-drops")
    assert f.subject.interface == "eth0"
    assert ev(f, "tx drops").value == pytest.approx(40.0)  # 40 in 1 s
    assert f.severity == "warning"
    assert any("txqueuelen" in a.text for a in f.actions if a.kind == "command")


def test_tx_drops_in_another_namespace_name_it(tmp_path):
    """A veth inside a container's namespace drops: only /proc/PID/net/dev of a process in it
    shows the interface; ksight's own /proc/net/dev does not move."""
    from tests.diagnose.tcp_helpers import OWN_NS

    m = Machine(tmp_path)
    cont = dict(m.net)
    cont["dev"] = m.net["dev"].replace("  eth1:", "  veth9:")
    m.process(1, OWN_NS, "init", net=dict(m.net))
    m.process(400, 4026532700, "app", net=cont)
    m.snap()
    cont["dev"] = bump_dev(cont["dev"], "veth9", TX_DROP, 25)
    m.snap()
    (f,) = found(m.check(("net",)), "net.tx-drops")
    assert (f.subject.interface, f.subject.netns) == ("veth9", "net:[4026532700]")
    assert ev(f, "tx drops").source == "/proc/400/net/dev"
    assert ev(f, "tx drops over the window").value == 25
    assert any(a.text.startswith("nsenter -t 400 -n ip link") for a in f.actions)


def test_tx_drops_critical(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    m.net["dev"] = bump_dev(m.net["dev"], "eth1", TX_DROP, 500)
    m.snap()
    (f,) = found(m.check(("net",)), "net.tx-drops")
    assert f.subject.interface == "eth1" and f.severity == "critical"


def test_softnet_squeeze_per_cpu(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    m.net["softnet_stat"] = bump_softnet(m.net["softnet_stat"], 2, 2, 400)  # cpu 2 squeezed
    m.snap()
    (f,) = found(m.check(("net",)), "net.softnet-squeeze")
    assert f.subject.cpu == "2"
    assert ev(f, "cpu2 time_squeeze").value == pytest.approx(400.0)
    names = {a.name: a.recommended for a in f.actions if a.kind == "sysctl"}
    assert names == {"net.core.netdev_budget": "600", "net.core.netdev_budget_usecs": "16000"}


def test_softnet_drops(tmp_path):
    m = Machine(tmp_path)
    m.snap()
    m.net["softnet_stat"] = bump_softnet(m.net["softnet_stat"], 1, 1, 200)
    m.snap()
    (f,) = found(m.check(("net",)), "net.softnet-squeeze")
    assert f.severity == "critical" and f.subject.cpu == "1"
    assert any(a.name == "net.core.netdev_max_backlog" and a.recommended == "2000"
               for a in f.actions)


def test_truncated_softnet_is_named_not_a_traceback(tmp_path):
    m = Machine(tmp_path)
    m.net["softnet_stat"] = "000008ac 00000000 0000\n"  # cut mid-line
    m.snap()
    m.snap()
    rep = m.check(("net",))
    reasons = {n.rule: n.reason for n in rep.not_evaluated}
    assert "softnet_stat" in reasons["net.softnet-squeeze"]
    assert "net.tx-drops" not in reasons
