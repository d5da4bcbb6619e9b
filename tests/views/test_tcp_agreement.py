"""`ksight tcp` against hand arithmetic and against ss, on real traffic inside network namespaces
this test creates (root; CI is root). Bounded: every process is killed by its PID at the end,
the namespaces are deleted (lab.netns.NetnsPair)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import IS_ROOT, need_tool

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not IS_ROOT, reason="needs root: creates network namespaces")]

SERVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7000)); s.listen(64)
held = []
end = time.time() + float(sys.argv[2])
s.settimeout(0.2)
while time.time() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    held.append(c)  # never closed: a client that closes leaves it in CLOSE_WAIT
    if sys.argv[3] == "drain":  # read the one bulk connection until the end
        c.settimeout(0.5)
        while time.time() < end:
            try:
                if not c.recv(65536):
                    break
            except socket.timeout:
                continue
            except OSError:
                break
"""

CLIENT = r"""
import socket, sys, time
addr, n, close_n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
cs = [socket.create_connection((addr, 7000), timeout=5) for _ in range(n)]
for c in cs[:close_n]:
    c.close()  # FIN_WAIT2 here, CLOSE_WAIT at the server
print("ready", flush=True)
time.sleep(hold)
"""

BULK = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], 7000), timeout=5)
end = time.time() + float(sys.argv[2])
buf = b"x" * 65536
c.settimeout(1.0)
while time.time() < end:
    try:
        c.send(buf)
    except socket.timeout:
        pass
"""


def _netns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def _ss_states(pair, ns: str) -> dict[str, int]:
    out = pair.run(ns, [need_tool("ss", "the reference for socket states"), "-tan"],
                   timeout=10).stdout
    got: dict[str, int] = {}
    names = {"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
             "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
             "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN",
             "CLOSING": "CLOSING", "UNCONN": "CLOSE"}
    for line in out.splitlines()[1:]:
        st = line.split()[0]
        got[names.get(st, st)] = got.get(names.get(st, st), 0) + 1
    return got


def _ss_info(pair, ns: str) -> dict:
    """(local, peer) -> {cwnd, rto, rcv_space} of the ESTABLISHED sockets, from `ss -tin`."""
    out = pair.run(ns, [need_tool("ss"), "-tinm", "state", "established"], timeout=10).stdout
    got, key = {}, None
    for line in out.splitlines()[1:]:
        if not line.startswith(("\t", " ")):
            f = line.split()
            key = (f[-2], f[-1]) if ":" in f[-1] else (f[-3], f[-2])
            continue
        kv = dict(t.split(":", 1) for t in line.split() if ":" in t and not t.startswith("("))
        got[key] = {"cwnd": int(kv["cwnd"]), "rto": float(kv["rto"]),
                    "rcv_space": int(kv["rcv_space"]),
                    "lastrcv": int(kv["lastrcv"]) if "lastrcv" in kv else None}
        mem = dict((f[:2] if f[1] == "b" else f[:1], f[2:] if f[1] == "b" else f[1:])
                   for f in kv["skmem"].strip("()").split(","))  # r0,rb131072,t0,tb16384,...
        got[key].update(rcvbuf=int(mem["rb"]), sndbuf=int(mem["tb"]))
    return got


def _wait_ready(p: subprocess.Popen, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stdout.readline()
        if line.strip() == "ready":
            return
        if p.poll() is not None:
            break
    raise AssertionError(f"client did not get ready: {p.stderr.read() if p.stderr else ''}")


def test_states_agree_with_ss_in_namespaces_we_create():
    from ksight.collect.collector import Collector
    from ksight.collect.plan import Plan
    from ksight.lab.netns import NetnsPair
    from ksight.views import tcp

    need_tool("ip", "creates the network namespaces")
    with NetnsPair() as pair:
        srv = pair.popen(pair.b, [sys.executable, "-c", SERVER, pair.addr_b, "20", "hold"])
        time.sleep(0.5)
        cli = pair.popen(pair.a, [sys.executable, "-c", CLIENT, pair.addr_b, "7", "3", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_ready(cli)
            time.sleep(0.5)  # the FINs are acknowledged: states settle
            for attempt in range(3):  # a quiet namespace: a retry only if a state moved between
                ss_a, ss_b = _ss_states(pair, pair.a), _ss_states(pair, pair.b)
                snap = Collector().one(Plan.of([tcp.needs(window=False)]))
                c = tcp.overview([snap]).census
                ours = {ns: c.by_netns.get(_netns_inode(n), {}) for ns, n in
                        (("a", pair.a), ("b", pair.b))}
                if ours["a"] == ss_a and ours["b"] == ss_b and ss_a == _ss_states(pair, pair.a):
                    break
            assert ours["a"] == ss_a, (ours["a"], ss_a)
            assert ours["b"] == ss_b, (ours["b"], ss_b)
            # and what we set up: 4 established + 3 FIN_WAIT2 on the client side; the server
            # holds 4 established, 3 CLOSE_WAIT and its listener
            assert ss_a == {"ESTABLISHED": 4, "FIN_WAIT2": 3}
            assert ss_b == {"LISTEN": 1, "ESTABLISHED": 4, "CLOSE_WAIT": 3}
            # the holders of the CLOSE_WAIT sockets: the server process, in namespace b
            held = [h for h in c.holders if h.state == "CLOSE_WAIT"
                    and h.netns == _netns_inode(pair.b)]
            assert held and held[0].count == 3 and held[0].pid is not None
            # per connection, like ss -tin: cwnd, rto and rcv_space of the idle connections
            info = _ss_info(pair, pair.a)
            assert len(info) == 4, info
            conns = tcp.connections(snap, states=("ESTABLISHED",))
            mine = {(c.local, c.remote): c for c in conns.rows if c.netns == _netns_inode(pair.a)}
            assert set(mine) == set(info), (set(mine), set(info))
            for k, want in info.items():
                got = mine[k]
                assert got.cwnd == want["cwnd"], (k, got, want)
                assert got.rto_ms == pytest.approx(want["rto"]), (k, got, want)
                assert got.rcv_space == want["rcv_space"], (k, got, want)
                assert (got.rcvbuf, got.sndbuf) == (want["rcvbuf"], want["sndbuf"]), (k, got, want)
                if want["lastrcv"] is not None:  # ms since data arrived: read moments apart
                    assert abs(got.last_data_recv_ms - want["lastrcv"]) < 3000, (k, got, want)
        finally:
            for p in (cli, srv):
                p.kill()
                p.wait(timeout=5)


def _tcp_pair(text: str) -> tuple[int, int]:
    """(RetransSegs, OutSegs) read by hand from /proc/net/snmp text."""
    lines = [ln.split() for ln in text.splitlines() if ln.startswith("Tcp:")]
    head, vals = lines[0], lines[1]
    return int(vals[head.index("RetransSegs")]), int(vals[head.index("OutSegs")])


def test_retransmission_rate_equals_hand_from_the_same_readings(tmp_path):
    """A lossy bulk transfer inside namespaces we create, captured; the rate `ksight tcp --from`
    reports for the sender's namespace equals ΔRetransSegs / ΔOutSegs x 100 computed here from
    the two /proc/PID/net/snmp texts the capture holds."""
    from ksight.lab.netns import NetnsPair
    from ksight.store.capture import capture

    need_tool("nft", "drops packets at random inside the namespaces")
    need_tool("ip", "creates the network namespaces")
    out = tmp_path / "cap"
    with NetnsPair(loss_pct=3) as pair:
        srv = pair.popen(pair.b, [sys.executable, "-c", SERVER, pair.addr_b, "25", "drain"])
        time.sleep(0.5)
        bulk = pair.popen(pair.a, [sys.executable, "-c", BULK, pair.addr_b, "22"])
        try:
            time.sleep(1.0)
            t0 = time.monotonic()
            capture(str(out), interval=1.0, count=2, processes=False,
                    sources=["snmp", "netstat", "sockstat", "sysctl", "uptime"])
            assert time.monotonic() - t0 < 20, "the capture outlived the transfer"
        finally:
            for p in (bulk, srv):
                p.kill()
                p.wait(timeout=5)
        ino = _netns_inode(pair.a)
    res = subprocess.run([sys.executable, "-m", "ksight", "tcp", "--from", str(out), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    ov = json.loads(res.stdout)["overview"]
    (ns,) = [n for n in ov["namespaces"] if n["netns"] == ino]
    pid = ns["pid"]
    snaps = sorted(d for d in out.iterdir() if d.is_dir())
    r0, o0 = _tcp_pair((snaps[0] / "proc" / str(pid) / "net" / "snmp").read_text())
    r1, o1 = _tcp_pair((snaps[-1] / "proc" / str(pid) / "net" / "snmp").read_text())
    assert o1 - o0 > 100, "the bulk transfer sent almost nothing"
    hand = (r1 - r0) / (o1 - o0) * 100
    assert ns["retrans"]["pct"] == pytest.approx(hand, rel=1e-9)
    assert ns["retrans"]["retrans_segs"] == r1 - r0 and ns["retrans"]["out_segs"] == o1 - o0
    assert r1 - r0 > 0, "3 % loss each way and no retransmission: the loss rules did not apply"
    # since boot too, from the last reading alone
    assert ns["retrans"]["since_boot_pct"] == pytest.approx(r1 / o1 * 100, rel=1e-9)


PINNED_SENDER = r"""
import socket, sys, time
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, int(sys.argv[2]))  # autotuning off for it
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
c.settimeout(5)
c.connect((sys.argv[1], 7000))
buf, sent, end = b"x" * 65536, 0, time.time() + 8
while sent < int(sys.argv[3]) and time.time() < end:
    sent += c.send(buf)
print("ready", flush=True)  # all written: once acknowledged, the chrono counters hold still
time.sleep(float(sys.argv[4]))
"""


def _ss_limited(pair, ns: str) -> dict:
    """(local, peer) -> busy, rwnd_limited, sndbuf_limited as `ss -ti` prints them: ms (integer
    division of tcp_info's usec) and the share of busy in % with one decimal; a part ss leaves
    out is 0 (it prints only what is not)."""
    import re

    out = pair.run(ns, [need_tool("ss"), "-tin", "state", "established"], timeout=10).stdout
    got, key = {}, None
    for line in out.splitlines()[1:]:
        if not line.startswith(("\t", " ")):
            f = line.split()
            key = (f[-2], f[-1]) if ":" in f[-1] else (f[-3], f[-2])
            continue
        m = re.search(r"\bbusy:(\d+)ms", line)
        row = {"busy": int(m.group(1)) if m else None}
        for part in ("rwnd_limited", "sndbuf_limited"):
            m = re.search(rf"\b{part}:(\d+)ms\(([\d.]+)%\)", line)
            row[part] = (int(m.group(1)), m.group(2)) if m else (0, None)
        got[key] = row
    return got


def test_buffer_limited_time_agrees_with_ss():
    """A sender with SO_SNDBUF 16 KiB across a 20 Mbit/s tbf shaper in namespaces we create:
    the kernel counts most of its busy time as limited by its send buffer (ss -ti:
    sndbuf_limited:...ms(x%)). ksight tcp --connections gives the same ms and shares, read from
    sock_diag's tcp_info after the transfer ends (then the counters no longer move)."""
    from ksight.collect.collector import Collector
    from ksight.collect.plan import Plan
    from ksight.lab.netns import NetnsPair
    from ksight.views import tcp

    need_tool("ip", "creates the network namespaces")
    tc = need_tool("tc", "shapes the namespace's veth (tbf)")
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
        if "cubic" not in f.read().split():
            pytest.skip("the cubic congestion control is not available (tcp_cubic)")
    with NetnsPair() as pair:
        r = subprocess.run([tc, "-n", pair.a, "qdisc", "add", "dev", pair.dev_a, "root", "tbf",
                            "rate", "20mbit", "burst", "32kb", "latency", "60ms"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            pytest.skip(f"tc tbf failed (kernel without sch_tbf?): {r.stderr.strip()}")
        srv = pair.popen(pair.b, [sys.executable, "-c", SERVER, pair.addr_b, "20", "drain"])
        time.sleep(0.5)
        cli = pair.popen(pair.a, [sys.executable, "-c", PINNED_SENDER, pair.addr_b, "16384",
                                  str(2 << 20), "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_ready(cli, timeout=15)
            ino = _netns_inode(pair.a)
            for attempt in range(10):  # until the last segment is acknowledged: ss and we agree
                time.sleep(0.5)
                want = _ss_limited(pair, pair.a)
                snap = Collector().one(Plan.of([tcp.needs(window=False)]))
                rows = {(c.local, c.remote): c for c in tcp.connections(
                    snap, states=("ESTABLISHED",)).rows if c.netns == ino}
                if want and want == _ss_limited(pair, pair.a) and set(rows) == set(want):
                    break
            assert len(want) == 1 and set(rows) == set(want), (rows, want)
            (k, w), = want.items()
            got = rows[k]
            assert w["busy"] and w["busy"] > 100, w  # 2 MiB at 20 Mbit/s: most of a second
            assert int(got.busy_ms) == w["busy"], (got, w)
            for part in ("rwnd_limited", "sndbuf_limited"):
                ms, share = getattr(got, f"{part}_ms"), getattr(got, f"{part}_pct")
                assert int(ms) == w[part][0], (part, got, w)
                if w[part][1] is not None:
                    assert f"{share:.1f}" == w[part][1], (part, got, w)
            # what the setup makes: a send buffer, not the network, holds the flow back
            assert got.sndbuf_limited_pct > 30, got
            assert got.sndbuf == 2 * 16384, got  # SO_SNDBUF 16 KiB: the kernel doubles it
        finally:
            for p in (cli, srv):
                p.kill()
                p.wait(timeout=5)
