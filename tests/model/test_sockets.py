"""model/sockets.py: the socket summary made from a socket table built here by hand (every
expected number is counted from the rows below), and the facts read back from summaries the way
a recording holds them (carried between reads)."""

from __future__ import annotations

import dataclasses

from ksight.collect.netns_counters import NetnsCounters, NsCounters
from ksight.collect.sockets import Sock, SocketTable
from ksight.model import sockets as ms
from ksight.model import tcp as mt
from ksight.model.series import Series
from ksight.model.snapshot import HostInfo, Snapshot
from ksight.sources.netstat import Netstat
from ksight.sources.sockstat import Sockstat

A, B = 4026531840, 4026532999  # two namespaces: ksight's (A) and a container's (B)


def sock(state, lport, raddr="0.0.0.0", rport=0, *, pid=None, comm=None, ns=A, inode=0,
         rx=0, cookie=None, idle=None, backlog=None, laddr="10.0.0.1"):
    return Sock("inet", laddr, lport, raddr, rport, state, 0, rx, 0, 0, 0, 0, inode, pid, comm,
                backlog=backlog, accept_queue=rx if state == "LISTEN" else None, netns=ns,
                cookie=cookie, last_data_recv_ms=idle)


def table(socks):
    return SocketTable(tuple(socks), True, None, tuple(sorted({s.netns for s in socks})))


def cw(i, pid=300, comm="leaky", idle=None):
    return sock("CLOSE_WAIT", 9000, "10.0.0.9" if i % 3 else "10.0.0.8", 50000 + i, pid=pid,
                comm=comm, inode=900 + i, cookie=7000 + i, idle=idle)


def test_summary_counts_owners_listeners_and_destinations():
    socks = [sock("LISTEN", 9000, pid=300, comm="leaky", inode=1, rx=3, backlog=7, laddr="0.0.0.0"),
             sock("LISTEN", 80, pid=400, comm="web", ns=B, inode=2, laddr="0.0.0.0")]
    socks += [cw(i, idle=1000 * (i + 1)) for i in range(5)]  # ages 1..5 s
    socks += [sock("NEW_SYN_RECV", 80, f"192.0.2.{i}", 40000 + i, ns=B) for i in range(4)]
    socks += [sock("TIME_WAIT", 33000 + i, "10.0.0.2", 5432) for i in range(6)]
    socks += [sock("ESTABLISHED", 33100 + i, "10.0.0.3", 443, pid=500, comm="cli") for i in range(2)]
    socks.append(sock("ESTABLISHED", 20000, "10.0.0.3", 443, pid=500, comm="cli"))  # below the range
    prev = frozenset(ms.cw_key(s) for s in socks[2:5])  # 3 of the 5 were there before
    nsc = NetnsCounters({
        A: NsCounters(A, 1, netstat=Netstat({"TcpExt": {"ListenOverflows": 1}})),
        B: NsCounters(B, 400, netstat=Netstat({"TcpExt": {"ListenOverflows": 9, "TCPOFOQueue": 5}}),
                      sockstat=Sockstat(12, {"TCP": {"tw": 2, "orphan": 1}, "UDP": {"inuse": 3}}))},
        own=A)
    sm = ms.summarise(table(socks), port_range=(32768, 60999), previous=prev, ns_counters=nsc)
    assert sm.version == ms.VERSION and sm.sockets == 2 + 5 + 4 + 6 + 3
    assert sm.states() == {"LISTEN": 2, "CLOSE_WAIT": 5, "SYN_RECV": 4, "TIME_WAIT": 6,
                           "ESTABLISHED": 3}
    assert {(c.netns, c.state): c.count for c in sm.by_state}[(B, "SYN_RECV")] == 4
    (row,) = [o for o in sm.by_owner if o.state == "CLOSE_WAIT"]
    assert (row.pid, row.comm, row.netns, row.count, row.held) == (300, "leaky", A, 5, 3)
    assert (row.oldest_ms, row.median_ms) == (5000, 3000)
    assert row.peers == "10.0.0.9 (3), 10.0.0.8 (2)"  # i = 1, 2, 4 and i = 0, 3
    assert all(o.held is None for o in sm.by_owner if o.state != "CLOSE_WAIT")
    lst = {(x.netns, x.local_port): x for x in sm.listeners}
    assert (lst[(A, 9000)].queue, lst[(A, 9000)].backlog, lst[(A, 9000)].syn_recv) == (3, 7, 0)
    assert lst[(B, 80)].syn_recv == 4 and lst[(B, 80)].pid == 400
    # 6 TIME_WAIT + 2 ESTABLISHED in 32768-60999; the one from port 20000 is not
    assert (sm.port_low, sm.port_high, sm.ports_in_use) == (32768, 60999, 8)
    assert [(d.remote_addr, d.remote_port, d.ports_in_use, d.time_wait) for d in sm.destinations] == [
        ("10.0.0.2", 5432, 6, 6), ("10.0.0.3", 443, 2, 0)]
    # the other namespace's counters only, the TcpExt ones the rules judge, sockstat's TCP line
    (c,) = sm.counters
    assert c.netns == B and c.pid == 400 and sm.own_netns == A
    assert c.netstat.groups == {"TcpExt": {"ListenOverflows": 9}}
    assert c.sockstat.groups == {"TCP": {"tw": 2, "orphan": 1}}


def test_first_read_does_not_know_what_stayed():
    sm = ms.summarise(table([cw(i) for i in range(3)]))
    (row,) = sm.by_owner
    assert row.held is None and row.oldest_ms is None
    # no port range given: every connection counts, one per client port here
    assert [d.ports_in_use for d in sm.destinations] == [1, 1, 1]
    assert sm.port_low is None and sm.ports_in_use is None


def test_owner_rows_are_bounded():
    socks = [sock("ESTABLISHED", 1000 + i, "10.0.0.2", 80, pid=1000 + i, comm="c")
             for i in range(ms.MAX_OWNERS + 7)]
    sm = ms.summarise(table(socks))
    assert len(sm.by_owner) == ms.MAX_OWNERS and sm.owners_truncated == 7


def _snap(t, summary=None, sockets=None):
    return Snapshot(taken_at=t, monotonic=None, uptime_s=None, host=HostInfo(hostname="h"),
                    sources={} if summary is None else {"socket_summary": summary},
                    sockets=sockets)


def _recording(tables, times, read_every=2):
    """Snapshots holding summaries as the recorder stores them: a read every `read_every`
    samples, carried between."""
    out, summ, keys = [], None, None
    for k, (tb, t) in enumerate(zip(tables, times)):
        if k % read_every == 0:
            summ = dataclasses.replace(ms.summarise(tb, previous=keys), taken_at=t)
            keys = ms.close_wait_keys(tb)
        out.append(_snap(t, summ))
    return out


def test_facts_from_summaries_carried_between_reads():
    """Reads at t=0, 2, 4 (carried at 1, 3): CLOSE_WAIT of pid 300 grows 4, 6, 8 and keeps the
    first ones; the listener's queue peaks at 9 over backlog 8 at the second read."""
    tables = []
    for k in range(5):
        n = 4 + 2 * (k // 2)
        q = (2, 9, 1)[k // 2]
        tables.append(table([cw(i) for i in range(n)] + [
            sock("LISTEN", 9000, pid=300, comm="leaky", rx=q, backlog=8, inode=1)]))
    snaps = _recording(tables, [100.0 + k for k in range(5)])
    s = Series(snaps)
    assert ms.from_summary(s) and len(ms.reads(s)) == 3
    (h,) = ms.close_wait_holders(s)
    assert (h.pid, h.count, h.counts, h.reads) == (300, 8, (4, 6, 8), 3)
    assert h.held == 4  # 6 were there at the previous read, but the first read had 4
    (lst,) = mt.listeners(s)
    assert (lst.peak_accept_queue, lst.accept_queue, lst.full_snapshots, lst.reads) == (9, 1, 1, 3)
    assert lst.socket == "10.0.0.1:9000" and lst.pid == 300
    # a window after the first read: the summary carried into it counts as a read
    s2 = Series(snaps[1:])
    assert [sm.taken_at for _i, sm in ms.reads(s2)] == [100.0, 102.0, 104.0]
    s3 = Series(snaps[3:])
    assert [sm.taken_at for _i, sm in ms.reads(s3)] == [102.0, 104.0]
    assert ms.read_series(s3).seconds == 2.0  # timed at the reads, not at the samples


def test_older_summary_says_what_it_lacks():
    sm = dataclasses.replace(ms.summarise(table([sock("FIN_WAIT2", 30000, "10.0.0.5", 80)])),
                             version=1)
    (fw,) = ms.fin_wait2(_snap(1.0, sm))
    assert fw.count == 1 and fw.owned is None  # an older summary's owner rows had no namespace
    assert ms.destinations(_snap(1.0, sm)) is None
