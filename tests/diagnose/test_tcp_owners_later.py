"""Socket owners looked up after the rules (Plan.owners_later, live `check`): sampled without
owners, a rule that names sockets' processes and found something looks again with the owners of
its sockets' states; a quiet window never reads a process's fds."""

from __future__ import annotations

from ksight.collect import sockets
from ksight.collect.plan import Needs, Plan
from ksight.diagnose.engine import diagnose, load_rules, plan_for
from tests.diagnose.tcp_helpers import OWN_NS, Machine, ev, found, tcp_row, tcp_table

LISTEN, CLOSE_WAIT = 0x0A, 0x08  # /proc/net/tcp's state numbers


def _leaky(tmp_path, n_wait: int = 30) -> Machine:
    m = Machine(tmp_path)
    m.owners_later = True
    rows = [tcp_row(0, "0.0.0.0", 9000, "0.0.0.0", 0, LISTEN, inode=900)]
    rows += [tcp_row(i + 1, "10.0.0.1", 9000, "10.0.0.9", 50000 + i, CLOSE_WAIT, rx=1,
                     inode=901 + i) for i in range(n_wait)]
    m.net["tcp"] = tcp_table(rows)
    m.process(200, OWN_NS, "idle")  # holds no socket: read before 300's fds
    m.process(300, OWN_NS, "leaky", inodes=[900] + [901 + i for i in range(n_wait)])
    m.snap()
    m.snap()
    return m


class Owners:
    """The owners callback diagnose gets (Collector.add_owners), recording what it was asked."""

    def __init__(self, m: Machine):
        self.m, self.asked = m, []

    def __call__(self, snaps, states):
        self.asked.append(tuple(states))
        return sockets.add_owners(self.m.root, snaps, states)


def test_sampled_without_owners(tmp_path):
    m = _leaky(tmp_path)
    table = m.snaps[-1].sockets
    assert len(table.sockets) == 31 and all(k.pid is None for k in table.sockets)
    # and without the fds: the process table (when any) has no socket inodes
    assert all(getattr(p, "socket_inodes", None) is None for p in (m.snaps[-1].processes or {}).values())


def test_a_finding_gets_its_owner_and_the_rule_looks_again(tmp_path):
    m = _leaky(tmp_path)
    own = Owners(m)
    rep = diagnose(m.snaps, ["tcp", "net"], owners=own)
    (f,) = found(rep, "tcp.close-wait-leak")
    assert f.subject.pid == 300 and f.subject.comm == "leaky"
    assert ev(f, "CLOSE_WAIT sockets").value == 30
    assert len(own.asked) == 1 and "CLOSE_WAIT" in own.asked[0]
    # without the callback (a capture holds its owners; here there are none) the same rule
    # still fires, naming no process: the owners change who is named, not whether it fires
    (g,) = found(diagnose(m.snaps, ["tcp", "net"]), "tcp.close-wait-leak")
    assert g.subject.pid is None


def test_owners_only_of_the_states_asked(tmp_path):
    m = _leaky(tmp_path)
    snaps = sockets.add_owners(m.root, m.snaps, ("LISTEN",))
    got = {k.inode: k.pid for k in snaps[-1].sockets.sockets}
    assert got[900] == 300 and {got[901 + i] for i in range(30)} == {None}
    assert snaps[0].sockets.sockets[0].comm == "leaky"
    # nothing to add: the same snapshot objects come back
    assert all(a is b for a, b in zip(sockets.add_owners(m.root, m.snaps, ("SYN_SENT",)), m.snaps))


def test_the_fd_scan_stops_when_every_wanted_socket_is_found(tmp_path, monkeypatch):
    m = _leaky(tmp_path)
    m.process(400, OWN_NS, "later")
    m.snap()
    seen = []
    real = sockets.socket_inodes
    monkeypatch.setattr(sockets, "socket_inodes", lambda root, pid: seen.append(pid) or real(root, pid))
    sockets.add_owners(m.root, m.snaps, ("LISTEN",))
    assert seen == [200, 300]  # 400's fds were never listed


def test_a_quiet_window_never_asks_for_owners(tmp_path):
    m = _leaky(tmp_path, n_wait=2)  # 2 CLOSE_WAIT: below the rule's 16
    own = Owners(m)
    rep = diagnose(m.snaps, ["tcp", "net"], owners=own)
    assert not found(rep, "tcp.close-wait-leak") and own.asked == []


def test_rules_that_name_owners_declare_their_states():
    rules = {r.id: r.needs.socket_owners for r in load_rules(["tcp"])}
    assert rules["tcp.listen-overflow"] == ("LISTEN",) and rules["tcp.syn-flood"] == ("LISTEN",)
    assert rules["tcp.close-wait-leak"] == ("CLOSE_WAIT",)
    assert rules["tcp.memory-pressure"] == ("*",)
    assert rules["tcp.retransmission-rate"] == ()  # its flows' owners come from tracing


def test_plan_owners_later():
    lazy = plan_for(None, owners_later=True)
    assert lazy.sockets and lazy.owners_later and "sockets" not in lazy.processes
    assert {"LISTEN", "CLOSE_WAIT"} <= set(lazy.socket_owners)
    # capture, views and the recorder keep owners at sample time (the default)
    eager = plan_for(None)
    assert not eager.owners_later and "sockets" in eager.processes
    # merged with a plan that wants owners now (`ksight tcp --connections`), owners are read now
    assert not lazy.merge(Plan.of([Needs(sockets=True)])).owners_later
    # merged with one that reads no sockets, they stay for later
    assert lazy.merge(Plan.of([Needs(sources=("meminfo",))])).owners_later
    assert not Plan.of([Needs(sources=("meminfo",))], owners_later=True).owners_later
