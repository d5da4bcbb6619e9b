"""`ksight tcp --pcap`: the retransmissions of a capture, as Wireshark finds them.

A capture is built here packet by packet (dpkt writes it) so that every case of Wireshark's
sequence analysis happens once at a known frame: a fast retransmission after two duplicate ACKs,
a retransmission after a timeout, a spurious one (data already ACKed), an out-of-order segment
(not a retransmission), a keep-alive (not one either), a retransmitted FIN, a retransmitted SYN
on a reused port pair, an IPv6 flow. The expected frames are written down by hand from that
construction, and also compared with `tshark -Y tcp.analysis.retransmission` on the same file
(skipped naming tshark when it is missing off CI). The capture of a real lossy link is compared
with tshark in tests/e2e/test_tcp_lab.py.
"""

from __future__ import annotations

import io
import socket
import subprocess

import pytest

from ksight.errors import UsageError
from ksight.views.tcp_pcap import analyse
from tests.conftest import need_tool

dpkt = pytest.importorskip("dpkt")

C4, S4 = "10.0.0.1", "10.0.0.2"
C6, S6 = "fd00::1", "fd00::2"
F, S, R, P, A = 0x01, 0x02, 0x04, 0x08, 0x10


def _tcp_ip(src, dst, sport, dport, seq, ack, flags, n=0, win=1000):
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win,
                       data=b"x" * n)
    if ":" in src:
        ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src),
                          dst=socket.inet_pton(socket.AF_INET6, dst), nxt=6, hlim=64, data=tcp)
        ip.plen = len(bytes(tcp))
        return ip, dpkt.ethernet.ETH_TYPE_IP6
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, ttl=64, data=tcp)
    ip.len = 20 + len(bytes(tcp))
    return ip, dpkt.ethernet.ETH_TYPE_IP


# (time, src, dst, sport, dport, seq, ack, flags, payload bytes)
def packets():
    c, s = (C4, S4, 40000, 80), (S4, C4, 80, 40000)
    p = [
        (0.000, *c, 1000, 0, S, 0),          # 1 SYN
        (0.005, *s, 5000, 1001, S | A, 0),    # 2 SYN/ACK
        (0.010, *c, 1001, 5001, A, 0),        # 3 ACK: first RTT 10 ms
        (1.000, *c, 1001, 5001, A | P, 100),  # 4
        (1.001, *c, 1101, 5001, A | P, 100),  # 5 (lost on the way, say)
        (1.002, *c, 1201, 5001, A | P, 100),  # 6
        (1.003, *c, 1301, 5001, A | P, 100),  # 7
        (1.004, *s, 5001, 1101, A, 0),        # 8 ACK 1101
        (1.005, *s, 5001, 1101, A, 0),        # 9 dup ACK 1
        (1.006, *s, 5001, 1101, A, 0),        # 10 dup ACK 2
        (1.007, *c, 1101, 5001, A | P, 100),  # 11 FAST retransmission of 1101
        (1.008, *s, 5001, 1401, A, 0),        # 12
        (1.100, *c, 1401, 5001, A | P, 100),  # 13
        (1.101, *c, 1501, 5001, A | P, 100),  # 14
        (1.400, *c, 1401, 5001, A | P, 100),  # 15 RETRANSMISSION after 300 ms (timeout)
        (1.401, *s, 5001, 1601, A, 0),        # 16 everything ACKed
        (1.500, *c, 1501, 5001, A | P, 100),  # 17 SPURIOUS: 1501-1601 was ACKed
        (1.600, *c, 1601, 5001, A | P, 100),  # 18
        (1.601, *c, 1801, 5001, A | P, 100),  # 19 (1701 comes late)
        (1.602, *c, 1701, 5001, A | P, 100),  # 20 out of order (1 ms < first RTT): not counted
        (1.700, *s, 5001, 1901, A, 0),        # 21
        (5.000, *c, 1900, 5001, A, 1),        # 22 keep-alive (seq = next - 1): not counted
        (5.001, *s, 5001, 1901, A, 0),        # 23 keep-alive ACK
        (6.000, *c, 1901, 5001, F | A, 0),    # 24 FIN
        (6.300, *c, 1901, 5001, F | A, 0),    # 25 FIN RETRANSMISSION
        (6.301, *s, 5001, 1902, F | A, 0),    # 26
        (6.302, *c, 1902, 5002, A, 0),        # 27
        (7.000, *c, 90000, 0, S, 0),          # 28 SYN reusing the ports: a new flow (1)
        (8.000, *c, 90000, 0, S, 0),          # 29 SYN RETRANSMISSION
        (8.001, *s, 7000, 90001, S | A, 0),   # 30
        (8.002, *c, 90001, 7001, R, 0),       # 31 RST
    ]
    c6, s6 = (C6, S6, 40001, 443), (S6, C6, 443, 40001)
    p += [
        (9.000, *c6, 1, 0, S, 0),              # 32 SYN (flow 2)
        (9.001, *s6, 100, 2, S | A, 0),        # 33
        (9.002, *c6, 2, 101, A, 0),            # 34
        (9.100, *c6, 2, 101, A | P, 50),       # 35
        (9.600, *c6, 2, 101, A | P, 50),       # 36 RETRANSMISSION (IPv6)
        (9.601, *s6, 101, 52, A, 0),           # 37
    ]
    return p


# by hand, from the construction above
EXPECTED = {11: "fast", 15: "retransmission", 17: "spurious", 25: "retransmission",
            29: "retransmission", 36: "retransmission"}


def write(path, fmt="pcap", link="ether", pkts=None):
    with open(path, "wb") as f:
        lt = {"raw": dpkt.pcap.DLT_RAW, "sll": 113, "sll2": 276}.get(link, dpkt.pcap.DLT_EN10MB)
        if fmt == "pcap":
            w = dpkt.pcap.Writer(f, linktype=lt)
        else:
            w = dpkt.pcapng.Writer(f, linktype=lt)
        for t, src, dst, sp, dp, seq, ack, flags, n in pkts or packets():
            ip, etype = _tcp_ip(src, dst, sp, dp, seq, ack, flags, n)
            if link == "raw":
                frame = bytes(ip)
            elif link == "sll":      # tcpdump -i any (Linux cooked v1)
                frame = bytes(dpkt.sll.SLL(type=4, hdr=b"\x02\0\0\0\0\1\0\0", ethtype=etype)) + bytes(ip)
            elif link == "sll2":     # tcpdump -i any (Linux cooked v2, libpcap >= 1.10)
                frame = bytes(dpkt.sll2.SLL2(ethtype=etype, intindex=2, type=4,
                                             hdr=b"\x02\0\0\0\0\1\0\0")) + bytes(ip)
            else:
                frame = bytes(dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\1", dst=b"\x02\0\0\0\0\2",
                                                     type=etype, data=ip))
            w.writepkt(frame, ts=1_700_000_000 + t)


def tshark_retransmissions(path) -> dict[int, str]:
    """frame -> kind as tshark marks them (the expert messages it attaches)."""
    tshark = need_tool("tshark", "the reference for tcp.analysis.retransmission")
    r = subprocess.run([tshark, "-n", "-r", str(path), "-Y", "tcp.analysis.retransmission", "-T",
                        "fields", "-e", "frame.number", "-e", "_ws.expert.message"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        frame, _, msg = line.partition("\t")
        out[int(frame)] = ("fast" if "fast retransmission" in msg else
                           "spurious" if "spurious" in msg else "retransmission")
    return out


def test_each_kind_is_found_at_its_frame(tmp_path):
    path = tmp_path / "cases.pcap"
    write(path)
    rep = analyse(str(path))
    assert rep.format == "pcap" and rep.link_type == 1
    assert rep.packets == len(packets()) == rep.tcp_packets
    assert {r.frame: r.kind for r in rep.retransmissions} == EXPECTED
    assert len(rep.flows) == 3
    f0, f1, f2 = rep.flows
    assert (f0.client, f0.server) == ("10.0.0.1:40000", "10.0.0.2:80") and f0.handshake_seen
    assert f0.retransmissions == 4 and f0.retransmitted_bytes == 300   # 3 x 100 + the FIN
    assert f0.packets == 27 and f0.data_bytes == 12 * 100 + 1   # frames 4-7, 11, 13-15, 17-20; the keep-alive byte
    assert f1.retransmissions == 1 and f1.packets == 4 and not f1.handshake_seen
    assert f2.client == "[fd00::1]:40001" and f2.retransmissions == 1
    by = {r.frame: r for r in rep.retransmissions}
    # tshark's relative sequence numbers: the ISN is 0, the first data byte 1
    assert by[11].rel_seq == 101 and by[11].length == 100 and by[11].src == "10.0.0.1:40000"
    assert by[25].flags == "FIN" and by[29].flags == "SYN" and by[29].flow == 1
    assert abs(by[15].rel_time - 1.400) < 1e-6 and abs(by[15].time - 1_700_000_001.4) < 1e-5


def test_agrees_with_tshark(tmp_path):
    path = tmp_path / "cases.pcap"
    write(path)
    assert tshark_retransmissions(path) == EXPECTED
    rep = analyse(str(path))
    assert {r.frame: r.kind for r in rep.retransmissions} == tshark_retransmissions(path)


@pytest.mark.parametrize("fmt,link", [("pcapng", "ether"), ("pcap", "raw"), ("pcap", "sll"),
                                      ("pcapng", "sll2")])
def test_pcapng_and_raw_ip(tmp_path, fmt, link):
    path = tmp_path / f"cases.{fmt}"
    write(path, fmt, link)
    rep = analyse(str(path))
    assert rep.format == fmt
    assert {r.frame: r.kind for r in rep.retransmissions} == EXPECTED
    assert {r.frame: r.kind for r in rep.retransmissions} == tshark_retransmissions(path)


def test_not_a_capture(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not a packet capture\n" * 10)
    with pytest.raises(UsageError, match="not a packet capture"):
        analyse(str(p))
    e = tmp_path / "empty.pcap"
    e.write_bytes(b"")
    with pytest.raises(UsageError, match="empty"):
        analyse(str(e))
    with pytest.raises(UsageError, match="cannot read"):
        analyse(str(tmp_path / "missing.pcap"))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_file_gives_the_packets_before_the_cut(tmp_path, fmt):
    full = tmp_path / f"full.{fmt}"
    write(full, fmt)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[:-30])            # the last packet (frame 37) loses its end
    rep = analyse(str(cut))
    assert rep.packets == len(packets()) - 1
    assert rep.problems and "middle" in rep.problems[0]
    assert {r.frame: r.kind for r in rep.retransmissions} == EXPECTED   # 36 is before the cut
    hdr = tmp_path / f"hdr.{fmt}"
    hdr.write_bytes(data[:10])             # not even a whole file header
    with pytest.raises(UsageError):
        analyse(str(hdr))


def test_non_tcp_packets_are_counted_not_analysed(tmp_path):
    path = tmp_path / "mixed.pcap"
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f)
        udp = dpkt.udp.UDP(sport=53, dport=5353, data=b"q")
        ip = dpkt.ip.IP(src=socket.inet_aton(C4), dst=socket.inet_aton(S4), p=17, data=udp)
        ip.len = 20 + len(bytes(udp))
        w.writepkt(bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)), ts=1.0)
        w.writepkt(bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_ARP,
                                                data=dpkt.arp.ARP())), ts=2.0)
    rep = analyse(str(path))
    assert rep.packets == 2 and rep.tcp_packets == 0 and not rep.flows
    assert rep.skipped == {"not TCP": 1, "not IP": 1}


def test_text_and_json(tmp_path):
    from ksight.render.jsonable import jsonable
    from ksight.render.tcp_pcap_text import render

    path = tmp_path / "cases.pcap"
    write(path)
    rep = analyse(str(path))
    buf = io.StringIO()
    render(rep, buf)
    text = buf.getvalue()
    assert "6 = 4 after a timeout or loss, 1 fast (after duplicate ACKs), 1 spurious" in text
    assert "10.0.0.1:40000" in text and "[fd00::1]:40001" in text
    doc = jsonable(rep)
    assert len(doc["retransmissions"]) == 6 and doc["retransmissions"][0]["kind"] == "fast"


def test_garbage_frames_and_odd_tcp_never_raise(tmp_path):
    """Random bytes on every link type, and TCP with random flags, options and lengths: counted,
    skipped or analysed, never a traceback."""
    import random

    rnd = random.Random(7)
    for lt in (1, 101, 113, 276, 0):
        path = tmp_path / f"junk{lt}.pcap"
        with open(path, "wb") as f:
            w = dpkt.pcap.Writer(f, linktype=lt)
            for i in range(500):
                b = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 90)))
                if lt == 101 and b:
                    b = b"\x45" + b[1:]
                w.writepkt(b, ts=i)
        rep = analyse(str(path))
        assert rep.packets == 500 == rep.tcp_packets + sum(rep.skipped.values())
    path = tmp_path / "odd.pcap"
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        for i in range(2000):
            tcp = dpkt.tcp.TCP(sport=1, dport=2, seq=rnd.choice([0, 0xFFFFFFFF, rnd.getrandbits(32)]),
                               ack=rnd.getrandbits(32), flags=rnd.getrandbits(8), win=rnd.choice([0, 5]),
                               data=b"x" * rnd.choice([0, 1, 9]))
            if i % 7 == 0:   # options that run past their end (dpkt yields None for them)
                tcp.opts = bytes(rnd.getrandbits(8) for _ in range(8))
                tcp.off = 7
            ip = dpkt.ip.IP(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", p=6, data=tcp)
            ip.len = 20 + len(bytes(tcp)) - rnd.choice([0, 0, 25])   # some claim too little
            w.writepkt(bytes(ip), ts=i / 1000)
    rep = analyse(str(path))
    assert rep.packets == 2000 and rep.flows


def test_out_of_order_window_is_the_first_rtt_to_the_microsecond(tmp_path):
    """Wireshark: out of order when the gap since the highest segment is *below* the handshake's
    RTT; at exactly the RTT it is a retransmission. The timestamps are those of a real capture
    of the lab's lossy link (epoch 1796086361.x) where float seconds put 48 us - 48 us on the
    wrong side: the comparison must be made in integer time."""
    c = (C4, S4, 40000, 80)
    s = (S4, C4, 80, 40000)
    b = 96086361   # write() adds 1.7e9
    pk = [
        (b + .047155, *c, 1000, 0, S, 0),          # 1
        (b + .047187, *s, 5000, 1001, S | A, 0),   # 2
        (b + .047203, *c, 1001, 5001, A, 0),       # 3 first RTT 48 us
        (b + .649800, *c, 1001, 5001, A | P, 100),  # 4
        (b + .649874, *c, 1101, 5001, A | P, 100),  # 5 highest so far
        (b + .649922, *c, 1001, 5001, A | P, 100),  # 6 48 us after 5: a retransmission
        (b + .900000, *c, 1201, 5001, A | P, 100),  # 7 highest
        (b + .900047, *c, 1101, 5001, A | P, 100),  # 8 47 us after 7: out of order
    ]
    path = tmp_path / "rtt.pcap"
    write(path, pkts=pk)
    rep = analyse(str(path))
    assert {r.frame: r.kind for r in rep.retransmissions} == {6: "retransmission"}
    assert tshark_retransmissions(path) == {6: "retransmission"}
