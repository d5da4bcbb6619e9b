import ipaddress
import os
import socket

import pytest

from ksight.errors import ParseError
from ksight.fs import DirRoot, LiveRoot
from ksight.sources import net_tcp
from tests.conftest import corpus_root, corpus_text


def _le_words(hexaddr: str) -> str:
    """Independent decode for the assertions: swap the bytes of each 32-bit word by hand."""
    words = [hexaddr[i:i + 8] for i in range(0, len(hexaddr), 8)]
    swapped = "".join("".join(reversed([w[j:j + 2] for j in range(0, 8, 2)])) for w in words)
    return str(ipaddress.ip_address(bytes.fromhex(swapped)))


def test_procfs_tcp():
    t = net_tcp.read(corpus_root("procfs"))
    v4 = [s for s in t.sockets if s.family == "inet"]
    v6 = [s for s in t.sockets if s.family == "inet6"]
    assert len(v4) == 3 and len(v6) == 2
    s = v4[0]  # "0500000A:0016 ... 0A 00000000:00000001 ... 0 0 2740"
    assert s.local_addr == _le_words("0500000A") == "10.0.0.5"
    assert (s.local_port, s.state, s.tx_queue, s.rx_queue, s.uid, s.inode) == \
        (22, "LISTEN", 0, 1, 0, 2740)
    assert (v4[1].tx_queue, v4[1].rx_queue) == (1, 0)
    a, b = v6
    assert (a.local_addr, a.local_port, a.state, a.uid, a.inode) == ("::", 0x14EB, "CLOSE", 981, 21040)
    assert b.local_addr == _le_words("000080FE00000000FFADE15609667CFE") == "fe80::56e1:adff:fe7c:6609"
    assert (b.local_port, b.remote_addr, b.uid, b.inode) == (0xC781, "::", 1000, 11337031)


def test_pcp_capture_counts():
    root = corpus_root("pcp", "unpacked", "procnet-4.15.14-root-001")
    t = net_tcp.read(root)
    lines4 = corpus_text("pcp", "unpacked", "procnet-4.15.14-root-001", "proc", "net", "tcp")
    lines6 = corpus_text("pcp", "unpacked", "procnet-4.15.14-root-001", "proc", "net", "tcp6")
    assert len(t.sockets) == len(lines4.splitlines()) - 1 + len(lines6.splitlines()) - 1
    s = next(x for x in t.sockets if x.inode == 22376)  # "0100007F:18EB ... 0A ... 384 0 22376"
    assert (s.local_addr, s.local_port, s.state, s.uid) == ("127.0.0.1", 0x18EB, "LISTEN", 384)
    assert sum(t.by_state().values()) == len(t.sockets)


def test_big_endian_capture():
    # the same socket printed by a big-endian host: words are not swapped
    assert net_tcp.decode_addr("7F000001", "big") == "127.0.0.1"
    assert net_tcp.decode_addr("0100007F", "little") == "127.0.0.1"
    assert net_tcp.decode_addr("00000000000000000000000001000000") == "::1"
    assert net_tcp.decode_addr("0000000000000000FFFF00000100007F") == "::ffff:127.0.0.1"


def test_tcp6_missing_gives_v4_only(tmp_path):
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "tcp").write_text(corpus_text("procfs", "proc", "net", "tcp"))
    t = net_tcp.read(DirRoot(str(tmp_path)))
    assert len(t.sockets) == 3 and {s.family for s in t.sockets} == {"inet"}


def test_header_only_is_empty_table():
    t = net_tcp.parse("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
    assert t.sockets == () and t.by_state() == {}


def test_live_own_listeners():
    # our own sockets: addresses, ports and the socket inode (fstat of the fd) must match
    socks = []
    try:
        for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            socks.append(s)
            try:
                s.bind((addr, 0))
            except OSError:
                continue  # no IPv6 loopback here
            s.listen(7)
            port = s.getsockname()[1]
            ino = os.fstat(s.fileno()).st_ino
            t = net_tcp.read(LiveRoot())
            mine = [x for x in t.sockets if x.inode == ino]
            assert len(mine) == 1
            m = mine[0]
            assert (m.local_addr, m.local_port, m.state, m.rx_queue, m.uid) == \
                (addr, port, "LISTEN", 0, os.geteuid())
            assert m.family == ("inet" if fam == socket.AF_INET else "inet6")
    finally:
        for s in socks:
            s.close()


HDR = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
ROW = "   0: 0500000A:0016 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 2740 1 ffff88003d3af3c0 100 0 0 10 0\n"


@pytest.mark.parametrize("text", [
    "", ROW[:40], HDR + ROW[:50],
    HDR + ROW.replace("0500000A:0016", "0500000A0016"),
    HDR + ROW.replace("0500000A", "0500000"),  # 7 hex digits
    HDR + ROW.replace(" 0A ", " ZZ "),
    HDR + ROW.replace(" 2740 ", " inode "),
    HDR + "garbage garbage\n",
])
def test_bad_input(text):
    with pytest.raises(ParseError) as ei:
        net_tcp.parse(text)
    assert ei.value.path == "proc/net/tcp"
