"""End to end: each TCP lab scenario really makes its fault, in network namespaces other than
ksight's own, and `ksight check --json --area tcp --area net` (the CLI, in a subprocess, as a
user runs it) reports the scenario's rule with the right subject: the listener's address, port
and PID, the PID holding CLOSE_WAIT, the namespace.

The fault is first proven without ksight: the counters of the scenario's namespace read with
`ip netns exec NS cat /proc/net/netstat` (and /proc/net/snmp) before and after, `ss -tan` state
counts and `ss -ltn` queues inside the namespace, nft's own drop counters. Also here: the
capture of the lossy link is read by `ksight tcp --pcap` and by tshark, which must agree; and
at rest no tcp or net rule warns. Needs root (CI is root)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import need_tool, needs_root, unavailable

pytestmark = [needs_root, pytest.mark.lab]

CHECK_S = 5.0
AREAS = ("--area", "tcp", "--area", "net")
PORT = 5001


def run_check(*extra: str, seconds: float | None = CHECK_S) -> subprocess.CompletedProcess:
    """The check, run while the fault is on; judged later (by doc_of), after the raw signal."""
    cmd = [sys.executable, "-m", "ksight", "check", "--json", *AREAS, *extra]
    if seconds is not None:
        cmd += ["--interval", str(seconds)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def doc_of(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode in (0, 1, 2, 3), p.stderr
    assert p.stdout.strip(), f"ksight check printed nothing (exit {p.returncode}): {p.stderr}"
    doc = json.loads(p.stdout)
    assert doc["exit_status"] == p.returncode
    return doc


def settle(run, t0: float) -> None:
    """The raw signal is measured over CHECK_S however long the check took (it may fail fast)."""
    run.wait(max(0.0, t0 + CHECK_S - time.monotonic()))


def ns_text(ns: str, path: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return r.stdout


def counters(ns: str) -> dict[str, int]:
    """'Group:Name' -> value from /proc/net/snmp and /proc/net/netstat inside ns (own parse)."""
    out = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = ns_text(ns, path).splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            g, _, names = head.partition(":")
            g2, _, values = vals.partition(":")
            assert g == g2
            for n, v in zip(names.split(), values.split()):
                out[f"{g}:{n}"] = int(v)
    return out


def ss(ns: str, *args: str) -> list[str]:
    r = subprocess.run(["ip", "netns", "exec", ns, "ss", "-H", *args], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return [x for x in r.stdout.splitlines() if x.strip()]


def netns_label(ns: str) -> str:
    return f"net:[{os.stat(f'/run/netns/{ns}').st_ino}]"


def findings(p: subprocess.CompletedProcess, rule_id: str) -> list[dict]:
    doc = doc_of(p)
    mine = [f for f in doc["findings"] if f["id"] == rule_id]
    assert mine, (rule_id, [(f["id"], f["subject"]) for f in doc["findings"]],
                  doc["not_evaluated"])
    for f in mine:
        assert f["severity"] in ("warning", "critical") and f["evidence"] and f["actions"], f
    return mine


def start(name: str, seconds: float):
    from ksight.lab import SCENARIOS, available

    need_tool("ss", "the independent view of sockets in the namespace")
    sc = SCENARIOS[name]
    ok, why = available(sc)
    if not ok:
        unavailable(f"{name}: {why}")
    return sc.running(seconds)


def _in_subject_netns(f: dict, *labels: str) -> None:
    got = (f["subject"] or {}).get("netns")
    if got is not None:
        assert got in labels, (f["subject"], labels)


def test_lossy_link_retransmits():
    with start("tcp-lossy-link", CHECK_S + 15) as run:
        a = run.info["ns_client"]
        labels = netns_label(a), netns_label(run.info["ns_server"])
        c0 = counters(a)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        c1 = counters(a)
        dropped = run.info["pair"].dropped_packets()
    # the raw signal: nft dropped packets, and the sender retransmitted over 1 % of its segments
    assert sum(dropped.values()) > 0, dropped
    out = c1["Tcp:OutSegs"] - c0["Tcp:OutSegs"]
    rt = c1["Tcp:RetransSegs"] - c0["Tcp:RetransSegs"]
    assert out > 5000 and 100.0 * rt / out > 1.0, (out, rt)
    for f in findings(doc, "tcp.retransmission-rate"):
        _in_subject_netns(f, *labels)


def test_listen_overflow_names_the_listener():
    with start("tcp-listen-overflow", CHECK_S + 15) as run:
        b, pid = run.info["ns_server"], run.info["server_pid"]
        label = netns_label(b)
        c0 = counters(b)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        c1 = counters(b)
        listen = ss(b, "-ltn", f"sport = :{PORT}")
    # the raw signal: ListenOverflows moved in b, and ss shows the accept queue (Recv-Q) over
    # the backlog (Send-Q) of 1
    assert c1["TcpExt:ListenOverflows"] - c0["TcpExt:ListenOverflows"] > 10
    assert len(listen) == 1, listen
    st, recvq, sendq = listen[0].split()[:3]
    assert st == "LISTEN" and int(sendq) == 1 and int(recvq) >= 1, listen
    subj = [f["subject"] for f in findings(doc, "tcp.listen-overflow")]
    want = f"{run.info['server_addr']}:{PORT}"
    assert any(s and s.get("socket") == want and s.get("pid") == pid for s in subj), (want, pid, subj)
    s = next(s for s in subj if s and s.get("socket") == want)
    assert s.get("netns") == label, s
    assert s.get("comm", "").startswith("python"), s


def test_close_wait_names_the_process():
    with start("tcp-close-wait", CHECK_S + 15) as run:
        b, pid = run.info["ns_server"], run.info["server_pid"]
        t0 = time.monotonic()
        n0 = len(ss(b, "-tan", "state", "close-wait"))
        doc = run_check()
        settle(run, t0)
        held = ss(b, "-tanp", "state", "close-wait")
    # the raw signal: CLOSE_WAIT grows (5 a second after the first 100), every socket held by
    # the server's PID
    assert n0 >= 50 and len(held) >= n0 + 3 * 5, (n0, len(held))
    # (a connection the client closed before accept() took it is in the accept queue: no owner)
    owned = [x for x in held if "users:" in x]
    assert len(owned) >= len(held) - 5, held
    assert all(f"pid={pid}," in line for line in owned), (pid, [x for x in owned if f"pid={pid}," not in x][:3])
    subj = [f["subject"] for f in findings(doc, "tcp.close-wait-leak")]
    assert any(s and s.get("pid") == pid for s in subj), (pid, subj)


def test_time_wait_storm():
    with start("tcp-time-wait-storm", CHECK_S + 15) as run:
        a = run.info["ns_client"]
        label = netns_label(a)
        c0 = counters(a)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        c1 = counters(a)
        tw = len(ss(a, "-tan", "state", "time-wait"))
    # the raw signal: TIME_WAIT at tcp_max_tw_buckets (1024) in a, and the overflow counted
    assert tw >= 0.9 * 1024, tw
    assert c1["TcpExt:TCPTimeWaitOverflow"] > c0["TcpExt:TCPTimeWaitOverflow"], (c0, c1)
    for f in findings(doc, "tcp.time-wait-pressure"):
        _in_subject_netns(f, label)


def test_memory_pressure():
    with start("tcp-memory-pressure", CHECK_S + 15) as run:
        b = run.info["ns_server"]
        c0 = counters(b)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        c1 = counters(b)
        _, pressure, _ = run.info["tcp_mem"]
        mem = int(re.search(r"TCP: .* mem (\d+)", ns_text(b, "/proc/net/sockstat")).group(1))
    # the raw signal: the kernel entered TCP memory pressure again during the window
    assert c1["TcpExt:TCPMemoryPressures"] > c0["TcpExt:TCPMemoryPressures"], (c0, c1)
    assert mem > 0 and pressure > 0
    findings(doc, "tcp.memory-pressure")


def _tx_drop(ns: str, dev: str) -> int:
    """TX drop of one interface from /proc/net/dev inside ns (own parse: the 12th number)."""
    for line in ns_text(ns, "/proc/net/dev").splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == dev:
            return int(rest.split()[11])
    raise AssertionError(f"{dev} not in /proc/net/dev of {ns}")


def test_tx_drops_names_the_interface():
    with start("net-tx-drops", CHECK_S + 15) as run:
        ns, dev = run.info["ns"], run.info["interface"]
        label = netns_label(ns)
        d0 = _tx_drop(ns, dev)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        d1 = _tx_drop(ns, dev)
        link = subprocess.run(["ip", "-n", ns, "-s", "link", "show", dev], capture_output=True,
                              text=True, timeout=10).stdout
    # the raw signal: 200 drops a second, in /proc/net/dev and in `ip -s link` (TX: dropped)
    assert d1 - d0 >= 0.5 * 200 * CHECK_S, (d0, d1)
    tx = link.split("TX:")[1].splitlines()[1].split()   # bytes packets errors dropped ...
    assert abs(int(tx[3]) - d1) <= 50, link
    subj = [f["subject"] for f in findings(doc, "net.tx-drops")]
    assert any(s and s.get("interface") == dev and s.get("netns") in (None, label)
               for s in subj), (dev, label, subj)


def test_pcap_of_the_lossy_link_agrees_with_tshark(tmp_path):
    """tcpdump inside the sender's namespace (MTU-sized frames: GSO off on the veth, so the
    capture has duplicate ACKs and fast retransmissions like a real wire)."""
    tcpdump = need_tool("tcpdump", "captures the lossy link")
    from tests.views.test_tcp_pcap import tshark_retransmissions

    need_tool("tshark", "the reference for tcp.analysis.retransmission")
    pcap = tmp_path / "lossy.pcap"
    with start("tcp-lossy-link", 6) as run:
        pair = run.info["pair"]
        for ns, dev in ((pair.a, pair.dev_a), (pair.b, pair.dev_b)):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "gso_max_segs", "1"], timeout=10)
        p = subprocess.Popen(["ip", "netns", "exec", pair.a, tcpdump, "-i", pair.dev_a, "-s",
                              "96", "-c", "20000", "-w", str(pcap), "tcp"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 5
            while p.poll() is None and time.monotonic() < end:
                time.sleep(0.2)
        finally:
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=10)
    want = tshark_retransmissions(pcap)
    assert len(want) > 20, "too few retransmissions to compare"
    r = subprocess.run([sys.executable, "-m", "ksight", "tcp", "--pcap", str(pcap), "--json"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and ("invalid choice: 'tcp'" in r.stderr or "unrecognized" in r.stderr):
        from ksight.views.tcp_pcap import analyse   # cli/tcp.py not merged on this branch yet

        got = {x.frame: x.kind for x in analyse(str(pcap)).retransmissions}
        pytest.fail(f"`ksight tcp --pcap` is not wired yet; the view alone: "
                    f"{'agrees' if got == want else 'DISAGREES'} with tshark")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)["pcap"]
    got = {x["frame"]: x["kind"] for x in doc["retransmissions"]}
    assert got == want
    assert sum(f["retransmissions"] for f in doc["flows"]) == len(want)


def test_no_tcp_or_net_rule_warns_at_rest():
    """Holds the lab's sysctl lock meanwhile, so no lab run elsewhere lowers tcp_mem during the
    check; findings about a lab namespace of another run on this machine are not ours."""
    from ksight.lab.netns import list_namespaces
    from ksight.lab.sysctl import SysctlGuard

    g = SysctlGuard()
    g._lock()
    try:
        doc = doc_of(run_check())
        labs = set()
        for n in list_namespaces():
            if re.match(r"^ksl\d+[ab]$", n):
                try:
                    labs.add(netns_label(n))
                except FileNotFoundError:
                    pass
    finally:
        g._unlock()
    assert doc["rules_selected"] >= 10 and doc["rules_run"] > 0, doc["not_evaluated"]
    loud = [f for f in doc["findings"] if f["id"].startswith(("tcp.", "net."))
            and f["severity"] in ("warning", "critical")
            and (f["subject"] or {}).get("netns") not in labs]
    assert not loud, loud


def test_pcap_with_handshakes_agrees_with_tshark(tmp_path):
    """The capture starts before the connections: three short bulk transfers over the lossy
    link, each with its handshake (Wireshark then takes the first RTT as its out-of-order
    window) and its close."""
    tcpdump = need_tool("tcpdump", "captures the lossy link")
    need_tool("tshark", "the reference for tcp.analysis.retransmission")
    need_tool("nft", "packet loss in the namespaces")
    from ksight.lab.netns import NetnsPair
    from ksight.lab.scenario import python_worker
    from ksight.lab.tcp_scenarios import WORKER, _wait_listening
    from ksight.views.tcp_pcap import analyse
    from tests.views.test_tcp_pcap import tshark_retransmissions

    pcap = tmp_path / "handshakes.pcap"
    with NetnsPair(loss_pct=3) as pair:
        for ns, dev in ((pair.a, pair.dev_a), (pair.b, pair.dev_b)):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "gso_max_segs", "1"], timeout=10)
        td = pair.popen(pair.a, [tcpdump, "-i", pair.dev_a, "-s", "96", "-c", "30000", "-w",
                                 str(pcap), "tcp"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        srv = pair.popen(pair.b, python_worker(WORKER, "sink", pair.addr_b, PORT, 20))
        _wait_listening(srv, pair.b)    # else a connect refused adds a flow (SYN, RST)
        for _ in range(3):
            pair.popen(pair.a, python_worker(WORKER, "bulk", pair.addr_b, PORT, 1.5,
                                             4_000_000)).wait(timeout=30)
        time.sleep(0.5)
        td.terminate()
        td.wait(timeout=10)
    rep = analyse(str(pcap))
    assert len(rep.flows) == 3 and all(f.handshake_seen for f in rep.flows), rep.flows
    assert all(f.data_bytes > 1_000_000 for f in rep.flows), rep.flows
    want = tshark_retransmissions(pcap)
    assert len(want) > 10
    assert {r.frame: r.kind for r in rep.retransmissions} == want


@pytest.mark.parametrize("name,rule_id", [("tcp-listen-overflow", "tcp.listen-overflow"),
                                          ("tcp-close-wait", "tcp.close-wait-leak"),
                                          ("tcp-syn-flood", "tcp.syn-flood")])
def test_a_capture_gives_the_same_findings(tmp_path, name, rule_id):
    """`ksight capture` while the fault runs, then `check --from` the capture (any machine)."""
    cap = str(tmp_path / "cap.tar.zst")
    with start(name, 30) as run:   # the load outlasts a slow capture on a busy machine
        pid = run.info["server_pid"]
        p = subprocess.run([sys.executable, "-m", "ksight", "capture", "-o", cap, "-i", "1",
                            "-c", str(int(CHECK_S) + 1)], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
    subj = [f["subject"] for f in findings(run_check("--from", cap, seconds=None), rule_id)]
    assert any(s and s.get("pid") == pid for s in subj), (pid, subj)
    if rule_id in ("tcp.listen-overflow", "tcp.syn-flood"):
        assert any(s.get("socket") == f"{run.info['server_addr']}:{PORT}" for s in subj if s)


def test_syn_flood_in_the_servers_namespace():
    with start("tcp-syn-flood", CHECK_S + 15) as run:
        b = run.info["ns_server"]
        label = netns_label(b)
        c0 = counters(b)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        c1 = counters(b)
        # the kernel prunes old requests of a queue more than half full (fewer SYN-ACK retries,
        # reqsk_timer_handler), new SYNs refill it at once: the fullest of a few looks
        seen = []
        for _ in range(5):
            seen.append(ss(b, "-tan", "state", "syn-recv", f"sport = :{PORT}"))
            time.sleep(0.2)
        synrecv = max(seen, key=len)
    # the raw signal: b answered with SYN cookies (200 SYNs/s, the queue full), and ss shows
    # the SYN queue: half-open requests to the listener, from the spoofed 198.19.x.y sources,
    # as many as the backlog of 16 lets in (the queue is full past it)
    sent = c1["TcpExt:SyncookiesSent"] - c0["TcpExt:SyncookiesSent"]
    assert sent >= 0.5 * 200 * CHECK_S, (sent, c0["TcpExt:SyncookiesSent"])
    assert c1["TcpExt:SyncookiesRecv"] == c0["TcpExt:SyncookiesRecv"]   # nobody completes
    assert 16 <= len(synrecv) <= 32, synrecv
    assert all(x.split()[-1].startswith("198.19.") for x in synrecv), synrecv[:3]
    mine = findings(doc, "tcp.syn-flood")
    assert any((f["subject"] or {}).get("netns") == label for f in mine), (label, mine)
    f = next(f for f in mine if f["subject"]["netns"] == label)
    # the listener whose SYN queue is full: its address, port and PID
    want = f"{run.info['server_addr']}:{PORT}"
    assert f["subject"]["socket"] == want and f["subject"]["pid"] == run.info["server_pid"], f
    rate = next(e for e in f["evidence"] if e["name"] == "SyncookiesSent")["value"]
    assert 100 <= rate <= 400, rate   # the sender's 200/s
    q = next(e for e in f["evidence"] if e["name"] == f"SYN queue of {want}")
    assert 1 <= q["value"] <= 16 + 1 and q["threshold"] == 16, q   # full past the backlog


def test_fin_wait2_in_the_clients_namespace():
    with start("tcp-fin-wait2", CHECK_S + 15) as run:
        a = run.info["ns_client"]
        label = netns_label(a)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        fw2 = ss(a, "-tan", "state", "fin-wait-2")
        fin = ns_text(a, "/proc/sys/net/ipv4/tcp_fin_timeout").strip()
    # the raw signal: the 1500 closed connections wait in FIN_WAIT2 in a (orphans, tcp_fin_timeout
    # 60 s there, longer than the run), all towards the server
    assert len(fw2) >= 1400 and fin == "60", (len(fw2), fin)
    assert all(f"{run.info['server_addr']}:{PORT}" in x for x in fw2), fw2[:3]
    mine = [f for f in findings(doc, "tcp.fin-wait2") if f["subject"]["netns"] == label]
    assert mine, (label, findings(doc, "tcp.fin-wait2"))
    n = next(e for e in mine[0]["evidence"] if e["name"] == "FIN_WAIT2 sockets")["value"]
    assert abs(n - len(fw2)) <= 50, (n, len(fw2))


_SS_NUM = {"rtt": r"\brtt:([\d.]+)/", "busy": r"\bbusy:(\d+)ms",
           "sndbuf_limited": r"\bsndbuf_limited:(\d+)ms", "tb": r"\btb(\d+)\b"}


def _ss_flow(ns: str, port: int) -> dict[str, float]:
    """ss -tinm of the flow from local port `port`: its rtt, sk_sndbuf (skmem tb), and the
    kernel's own account of time spent limited by the send buffer (tcp_info tcpi_sndbuf_limited
    against tcpi_busy_time, ss's busy: and sndbuf_limited:)."""
    text = " ".join(ss(ns, "-tinm", "state", "established", f"sport = :{port}"))
    return {k: float(m.group(1)) if (m := re.search(p, text)) else 0.0
            for k, p in _SS_NUM.items()}


def test_pinned_send_buffer_names_the_flow():
    with start("tcp-buffer-pinned", CHECK_S + 15) as run:
        a, pid = run.info["ns_client"], run.info["client_pid"]
        label = netns_label(a)
        port = int(run.info["pinned"].rsplit(":", 1)[1])
        s0 = _ss_flow(a, port)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        s1 = _ss_flow(a, port)
    # the raw signal, from ss: the flow's send buffer is what SO_SNDBUF 64 KiB gives (doubled by
    # the kernel), the path's RTT is the shaper's queue (milliseconds, not a veth's microseconds),
    # and the kernel itself says the buffer limited the flow most of the time it was busy
    assert s1["tb"] == 2 * 65536 and s1["rtt"] >= 5.0, s1
    busy = s1["busy"] - s0["busy"]
    assert busy > 0 and (s1["sndbuf_limited"] - s0["sndbuf_limited"]) >= 0.5 * busy, (s0, s1)
    f = findings(doc, "tcp.buffer-config")[0]
    want = f"{run.info['pinned']} -> {run.info['server_addr']}:{PORT}"
    assert f["subject"]["socket"] == want and f["subject"]["pid"] == pid, (want, pid, f["subject"])
    assert f["subject"]["netns"] == label, f["subject"]


def _softnet(col: int = 1) -> dict[int, int]:
    """A column per CPU from /proc/net/softnet_stat (own parse: hex; 1 dropped, 2 time_squeeze;
    the CPU is the 13th column on 5.10+, else the row number)."""
    out = {}
    with open("/proc/net/softnet_stat") as f:
        for i, line in enumerate(f):
            v = [int(x, 16) for x in line.split()]
            out[v[12] if len(v) > 12 else i] = v[col]
    return out


def test_softnet_drops_name_the_cpu():
    with start("net-softnet-squeeze", CHECK_S + 15) as run:
        cpu = run.info["rx_cpu"]
        d0 = _softnet()
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        d1 = _softnet()
    # the raw signal: the RPS target CPU's backlog overflowed (softnet_stat 'dropped'), many
    # times a second; that CPU, and no other, is the one the rule names first
    assert d1[cpu] - d0[cpu] >= 10 * CHECK_S, (cpu, d0, d1)
    (f,) = findings(doc, "net.softnet-squeeze")
    assert str(cpu) in f["subject"]["cpu"].split(","), (cpu, f["subject"])
    top = f["evidence"][0]
    assert top["name"] == f"cpu{cpu} dropped" and top["value"] >= 1, f["evidence"][:3]


def test_softnet_time_squeeze_names_the_cpu():
    """netdev_budget 16 (global, for the run): each datagram's ~63 hops in one backlog poll
    (up to dev_weight 64 packets) overrun it, so NET_RX stops with work left once a datagram."""
    with start("net-softnet-budget", CHECK_S + 15) as run:
        cpu = run.info["rx_cpu"]
        with open("/proc/sys/net/core/netdev_budget") as f:
            budget = int(f.read())
        q0 = _softnet(2)
        t0 = time.monotonic()
        doc = run_check()
        settle(run, t0)
        q1 = _softnet(2)
    # the raw signal: the loop's CPU squeezes about once per datagram (2000/s; half of that on a
    # loaded machine is plenty), far over the rule's 50/s
    assert budget == 16
    assert q1[cpu] - q0[cpu] >= 500 * CHECK_S, (cpu, q0, q1)
    (f,) = findings(doc, "net.softnet-squeeze")
    assert str(cpu) in f["subject"]["cpu"].split(","), (cpu, f["subject"])
    e = next(e for e in f["evidence"] if e["name"] == f"cpu{cpu} time_squeeze")
    assert e["value"] >= 500, f["evidence"]
    assert any(a["kind"] == "sysctl" and a["name"] == "net.core.netdev_budget"
               and int(a["recommended"]) > 16 for a in f["actions"]), f["actions"]
