import json
import os
import socket
import struct
import sys
import time
from types import SimpleNamespace

import pytest

from ksight.collect import sockdiag, sockets
from ksight.fs import DirRoot, LiveRoot
from ksight.fs import RecordingRoot
from tests.conftest import corpus_root


class Loopback:
    """A listener on 127.0.0.1 (backlog 5) that never accepts, and 3 connected clients."""

    def __enter__(self):
        self.all = []
        self.listener = socket.socket()
        self.all.append(self.listener)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(5)
        self.port = self.listener.getsockname()[1]
        self.clients = []
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.all.append(c)
            self.clients.append(c)
        self.clients[0].sendall(b"hello")  # some data so the client has a measured rtt
        self.listen_ino = os.fstat(self.listener.fileno()).st_ino
        self.client_inos = {os.fstat(c.fileno()).st_ino for c in self.clients}
        return self

    def __exit__(self, *exc):
        for s in self.all:
            s.close()


def _collect_settled(root, procs=None, want_queue=3):
    """Loopback handshakes finish in softirq: retry briefly (bounded) until the queue shows."""
    deadline = time.monotonic() + 3
    while True:
        table, missing = sockets.collect(root, procs)
        lst = [s for s in table.sockets if s.inode and s.state == "LISTEN"]
        if any(s.rx_queue == want_queue for s in lst) or time.monotonic() > deadline:
            return table, missing
        time.sleep(0.05)


def _mine(table, lb):
    lst = [s for s in table.sockets if s.inode == lb.listen_ino]
    cli = [s for s in table.sockets if s.inode in lb.client_inos]
    return lst, cli


def test_live_accept_queue_owner_and_tcp_info():
    with Loopback() as lb:
        table, missing = _collect_settled(LiveRoot())
        assert table.diag_available, table.diag_reason
        (lst,), cli = _mine(table, lb)
        assert (lst.local_addr, lst.local_port, lst.state) == ("127.0.0.1", lb.port, "LISTEN")
        assert lst.rx_queue == 3  # /proc/net/tcp: accept queue length of a listener
        assert lst.accept_queue == 3  # sock_diag idiag_rqueue
        assert lst.backlog == 5  # sock_diag idiag_wqueue: listen(5) (below somaxconn)
        assert (lst.pid, lst.comm) == (os.getpid(), open("/proc/self/comm").read().strip())
        assert len(cli) == 3
        for c in cli:
            assert c.state == "ESTABLISHED" and c.pid == os.getpid()
            assert c.remote_port == lb.port
            assert c.cwnd and c.cwnd > 0
            assert c.rtt_us is not None
            assert c.snd_mss and c.snd_mss > 0
            assert c.total_retrans == 0
        # the server side of the three connections waits in the accept queue: no file yet
        srv = [s for s in table.sockets if s.local_port == lb.port and s.state == "ESTABLISHED"]
        assert len(srv) == 3 and all(s.inode == 0 and s.pid is None for s in srv)
        counts = table.by_state()
        assert counts["ESTABLISHED"] >= 6 and counts["LISTEN"] >= 1


def test_owners_from_process_table():
    with Loopback() as lb:
        procs = {
            os.getpid(): SimpleNamespace(pid=os.getpid(), comm="me",
                                         socket_inodes=(lb.listen_ino, *lb.client_inos)),
            1: SimpleNamespace(pid=1, comm="init", socket_inodes=None),  # fds unreadable
        }
        table, _ = _collect_settled(LiveRoot(), procs)
        (lst,), cli = _mine(table, lb)
        assert (lst.pid, lst.comm) == (os.getpid(), "me")
        assert {c.comm for c in cli} == {"me"}


def _write_tree(tmp_path, rec):
    for path, data in rec.files.items():
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for path, target in rec.links.items():
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)


def test_capture_round_trip(tmp_path):
    """Record a live collect, write what was read to a tree, and collect again from it: the
    capture holds the raw netlink answer, decoded again on replay."""
    own_ns = os.stat("/proc/self/ns/net").st_ino
    with Loopback() as lb:
        rec = RecordingRoot(LiveRoot())
        table, _ = _collect_settled(rec)
        assert "ksight/sock_diag.json" not in rec.files  # format 1 is only read, never written
        index = json.loads(rec.files["ksight/sock_diag/index.json"])
        assert index["format"] == 2 and index["byteorder"] == sys.byteorder
        mine = [e for e in index["namespaces"] if e["netns"] == own_ns]
        assert len(mine) == 1 and mine[0]["families"]["inet"] == {"file": f"{own_ns}/inet4.bin"}
        raw = rec.files[f"ksight/sock_diag/{own_ns}/inet4.bin"]
        # raw netlink: the first message is a SOCK_DIAG_BY_FAMILY (20) answer, the last NLMSG_DONE
        assert struct.unpack_from("=IH", raw, 0)[1] == 20
        assert any(struct.unpack_from("=IH", raw, o)[1] == 3 for o in range(0, len(raw) - 5, 4))
    _write_tree(tmp_path, rec)
    replay, missing = sockets.collect(DirRoot(str(tmp_path)))
    assert replay.diag_available and own_ns in replay.namespaces
    (lst,), cli = _mine(replay, lb)
    assert (lst.accept_queue, lst.backlog, lst.rx_queue, lst.pid) == (3, 5, 3, os.getpid())
    assert lst.netns == own_ns and lst.cookie is not None
    (live_lst,), live_cli = _mine(table, lb)
    assert lst.cookie == live_lst.cookie
    assert {(c.cookie, c.cwnd) for c in cli} == {(c.cookie, c.cwnd) for c in live_cli}
    assert len({c.cookie for c in cli} | {lst.cookie}) == 4  # one id per socket
    assert replay.by_cookie()[lst.cookie] == lst


def test_capture_without_diag_keeps_proc_data():
    table, missing = sockets.collect(corpus_root("procfs"))
    assert not table.diag_available and table.diag_reason == "not in capture"
    assert any(m.source == "sockets.diag" for m in missing)
    assert len(table.sockets) == 5
    assert table.by_state() == {"LISTEN": 3, "CLOSE": 2}
    assert all(s.backlog is None and s.cwnd is None for s in table.sockets)


def test_diag_failure_is_reported(monkeypatch, tmp_path):
    def boom(pid):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(sockdiag, "query_raw", boom)
    with Loopback() as lb:
        rec = RecordingRoot(LiveRoot())
        table, missing = _collect_settled(rec)
        assert not table.diag_available
        assert "Operation not permitted" in table.diag_reason
        (lst,), _ = _mine(table, lb)
        assert lst.rx_queue == 3 and lst.accept_queue is None and lst.pid == os.getpid()
        assert lst.cookie is None
    # the reason is kept in the capture, so replay shows the original cause
    _write_tree(tmp_path, rec)
    again = sockdiag.collect(DirRoot(str(tmp_path)))
    assert again and all(not r.available and "Operation not permitted" in r.reason
                         for r in again.values())


def test_legacy_json_capture_is_read(tmp_path):
    """A capture of format 1 (ksight/sock_diag.json, decoded sockets) still replays."""
    net = tmp_path / "proc" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n")
    (tmp_path / "ksight").mkdir()
    (tmp_path / "ksight" / "sock_diag.json").write_text(json.dumps({
        "format": 1, "available": True, "reason": None, "sockets": [{
            "family": "inet", "state": "LISTEN", "local_addr": "127.0.0.1", "local_port": 8080,
            "remote_addr": "0.0.0.0", "remote_port": 0, "inode": 4242, "uid": 0,
            "rqueue": 2, "wqueue": 4, "info": None}]}))
    table, _ = sockets.collect(DirRoot(str(tmp_path)))
    (s,) = table.sockets
    assert (s.local_port, s.accept_queue, s.backlog, s.netns, s.cookie) == (8080, 2, 4, None, None)


def test_malformed_capture(tmp_path):
    (tmp_path / "ksight").mkdir()
    (tmp_path / "ksight" / "sock_diag.json").write_text("{not json")
    (r,) = sockdiag.collect(DirRoot(str(tmp_path))).values()
    assert not r.available and "malformed" in r.reason
    d = tmp_path / "ksight" / "sock_diag"
    d.mkdir()
    (d / "index.json").write_text(json.dumps({"format": 2, "byteorder": "little", "namespaces": [
        {"netns": 7, "pid": 1, "families": {"inet": {"file": "7/inet4.bin"},
                                            "inet6": {"file": "7/inet6.bin"}}}]}))
    (d / "7").mkdir()
    (d / "7" / "inet4.bin").write_bytes(_nlmsg(20, _diag_msg_bytes())[:50])  # cut mid-message
    (r,) = sockdiag.collect(DirRoot(str(tmp_path))).values()
    assert not r.available
    assert "inet: sock_diag answer not understood" in r.reason
    assert "inet6: dump not in capture" in r.reason


def test_no_tcp_table(tmp_path):
    table, missing = sockets.collect(DirRoot(str(tmp_path)))
    assert table.sockets == () and missing[0].source == "sockets"


def _nlmsg(n_type, body, flags=2):
    return struct.pack("<IHHII", 16 + len(body), n_type, flags, 1, 0) + body


def _diag_msg_bytes(*, info=None, cookie=0x1_0000_0002, inode=4242):
    """struct inet_diag_msg as include/uapi/linux/inet_diag.h lays it out (little-endian host):
    127.0.0.1:8080 -> 10.0.0.2:443, ESTABLISHED, with an optional INET_DIAG_INFO attribute."""
    body = bytes([2, 1, 0, 0]) + struct.pack(">HH", 8080, 443)
    body += bytes([127, 0, 0, 1]) + bytes(12) + bytes([10, 0, 0, 2]) + bytes(12)
    body += struct.pack("<IIIIIIII", 0, cookie & 0xFFFFFFFF, cookie >> 32, 0, 5, 7, 1000, inode)
    if info is not None:
        body += struct.pack("<HH", 4 + len(info), 2) + info + bytes(-len(info) % 4)
    return body


def test_decode_hand_built_dump():
    info = bytearray(232)
    struct.pack_into("<I", info, 80, 10)  # tcpi_snd_cwnd
    struct.pack_into("<I", info, 68, 50)  # tcpi_rtt
    struct.pack_into("<Q", info, 160, 123456)  # tcpi_delivery_rate
    dump = _nlmsg(20, _diag_msg_bytes(info=bytes(info))) + _nlmsg(3, struct.pack("<i", 0))
    (s,) = sockdiag.decode(dump, "little", netns=99)
    assert (s.family, s.state, s.local_addr, s.local_port) == ("inet", "ESTABLISHED", "127.0.0.1", 8080)
    assert (s.remote_addr, s.remote_port, s.rqueue, s.wqueue, s.uid) == ("10.0.0.2", 443, 5, 7, 1000)
    assert (s.inode, s.cookie, s.netns) == (4242, 0x1_0000_0002, 99)
    assert s.info["cwnd"] == 10 and s.info["rtt_us"] == 50 and s.info["delivery_rate"] == 123456
    with pytest.raises(ValueError):
        sockdiag.decode(dump[:-20])  # no NLMSG_DONE: truncated
    with pytest.raises(OSError):
        sockdiag.decode(_nlmsg(2, struct.pack("<i", -22) + bytes(16)))  # NLMSG_ERROR -EINVAL


def test_short_tcp_info_gives_none():
    info = bytearray(104)  # a 2.6-era struct tcp_info ends after tcpi_total_retrans
    struct.pack_into("<I", info, 80, 10)
    struct.pack_into("<I", info, 68, 50)
    struct.pack_into("<I", info, 100, 1)
    got = sockdiag.tcp_info(bytes(info), "little")
    assert got["cwnd"] == 10 and got["rtt_us"] == 50 and got["total_retrans"] == 1
    assert got["delivery_rate"] is None and got["bytes_retrans"] is None
    assert got["lost"] == 0  # inside the 104 bytes


def test_decoder_agrees_with_pyroute2():
    """An independent decoder of the same kernel answer (pyroute2's inet_diag_msg)."""
    pyroute2 = pytest.importorskip("pyroute2", reason="pyroute2 not installed")
    with Loopback() as lb:
        _collect_settled(LiveRoot())  # handshakes done: the accept queue holds still
        ours = {s.inode: s for s in sockdiag.query_live() if s.inode in lb.client_inos | {lb.listen_ino}}
        with pyroute2.DiagSocket() as ds:
            ds.bind()
            theirs = {int(m["idiag_inode"]): m for m in ds.get_sock_stats(
                family=socket.AF_INET, states=sockdiag.ALL_STATES, protocol=socket.IPPROTO_TCP)}
    assert len(ours) == 4
    for ino, s in ours.items():
        m = theirs[ino]
        assert s.cookie == int(m["idiag_cookie"])
        assert (s.local_port, s.remote_port) == (int(m["idiag_sport"]), int(m["idiag_dport"]))
        assert (s.rqueue, s.wqueue) == (int(m["idiag_rqueue"]), int(m["idiag_wqueue"]))


def test_namespaces_from_a_tree(tmp_path):
    """Two namespaces named by proc/PID/ns/net links: the tables of each are read through one of
    its processes; owners are joined on socket inodes whatever the namespace; a namespace whose
    table cannot be read is reported, not guessed."""
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = "   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {ino} 1 0 100 0 0 10 0\n"
    layout = {  # pid -> (netns, tcp table or None, socket inodes held)
        1: (111, head + row.format(port=22, ino=5001), ()),
        7: (222, head + row.format(port=80, ino=5002), (5001,)),  # holds a socket of netns 111
        8: (222, None, (5002,)),
        9: (333, None, ()),  # its table is missing: netns 333 unread
    }
    for pid, (ns, tcp, inos) in layout.items():
        d = tmp_path / "proc" / str(pid)
        (d / "ns").mkdir(parents=True)
        os.symlink(f"net:[{ns}]", d / "ns" / "net")
        (d / "fd").mkdir()
        for i, ino in enumerate(inos):
            os.symlink(f"socket:[{ino}]", d / "fd" / str(3 + i))
        (d / "comm").write_text(f"p{pid}\n")
        if tcp:
            (d / "net").mkdir()
            (d / "net" / "tcp").write_text(tcp)
    table, missing = sockets.collect(DirRoot(str(tmp_path)))
    got = sorted((s.netns, s.local_port, s.pid, s.comm) for s in table.sockets)
    assert got == [(111, 22, 7, "p7"), (222, 80, 8, "p8")]
    assert table.namespaces == (111, 222)
    assert [m.reason for m in missing if m.source == "sockets.netns"] == [
        "netns 333: TCP table not read (proc/9/net/tcp: missing (not on this kernel or not captured))"]


def test_unreadable_namespace_links_are_reported(tmp_path):
    """As a non-root user, other users' /proc/PID/ns/net cannot be read: sockets of namespaces
    seen only through them may be missing, and the table says so."""
    from ksight.errors import Unavailable

    class Denying(DirRoot):
        def readlink(self, path):
            if path == "proc/2/ns/net":
                raise Unavailable(path, "permission denied (run as root for this source)")
            return super().readlink(path)

    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    for pid in (1, 2):
        (tmp_path / "proc" / str(pid) / "ns").mkdir(parents=True)
        os.symlink(f"net:[{10 + pid}]", tmp_path / "proc" / str(pid) / "ns" / "net")
    (tmp_path / "proc" / "1" / "net").mkdir()
    (tmp_path / "proc" / "1" / "net" / "tcp").write_text(head)
    table, missing = sockets.collect(Denying(str(tmp_path)))
    assert table.namespaces == (11,)
    (m,) = [m for m in missing if m.source == "sockets.netns"]
    assert m.reason.startswith("1 processes' network namespace unreadable (permission denied)")


# -- the table from sock_diag alone (table_rows) against decode() and /proc/net/tcp ------------------

def _rows_vs_decode(raw, byteorder=sys.byteorder, clk_tck=100):
    """table_rows and decode on the same bytes: the same sockets, field by field."""
    rows = sockdiag.table_rows(raw, byteorder, 7, clk_tck)
    refs = [d for d in sockdiag.decode(raw, byteorder, 7) if d.state != "BOUND_INACTIVE"]
    assert len(rows) == len(refs)
    for r, d in zip(rows, refs):
        assert set(r) == set(sockdiag.ROW_FIELDS)
        assert (r["family"], r["local_addr"], r["local_port"], r["remote_addr"], r["remote_port"],
                r["state"], r["uid"], r["inode"], r["cookie"], r["netns"]) == (
            d.family, d.local_addr, d.local_port, d.remote_addr, d.remote_port, d.state, d.uid,
            d.inode, d.cookie, 7)
        assert r["rx_queue"] == d.rqueue and r["pid"] is None and r["comm"] is None
        if d.state == "LISTEN":
            assert (r["accept_queue"], r["backlog"], r["tx_queue"]) == (d.rqueue, d.wqueue, 0)
            assert r["cwnd"] is None
        else:
            assert r["tx_queue"] == d.wqueue and r["backlog"] is None
            for n in ("cwnd", "ssthresh", "rtt_us", "rttvar_us", "retrans", "total_retrans",
                      "lost", "unacked", "snd_mss", "delivery_rate", "bytes_retrans"):
                assert r[n] == (d.info[n] if d.info is not None else None), n
        if d.info is not None:
            assert r["retransmits"] == d.info["retransmits"]
    return rows


def test_table_rows_agree_with_decode_live():
    with Loopback():
        raws = sockdiag.query_raw(None)
        for raw in raws.values():
            assert isinstance(raw, bytes), raw
            _rows_vs_decode(raw)
        assert any(len(_rows_vs_decode(raw)) >= 7 for raw in raws.values())


def test_table_rows_hand_built():
    """Independent numbers: a keepalive timer (2) due in 12,345 ms is 1,234 ticks at USER_HZ 100
    (/proc/net/tcp's unit); retransmits come from tcp_info (icsk_retransmits) when present, else
    idiag_retrans; a short tcp_info leaves the newer fields None; a BOUND_INACTIVE row is dropped."""
    def msg(state=1, timer=2, retrans=3, expires=12345, info=None, bo="<"):
        body = bytes([2, state, timer, retrans]) + struct.pack(">HH", 8080, 443)
        body += bytes([127, 0, 0, 1]) + bytes(12) + bytes([10, 0, 0, 2]) + bytes(12)
        body += struct.pack(bo + "IIIIIIII", 0, 5, 0, expires, 5, 7, 1000, 4242)
        if info is not None:
            body += struct.pack(bo + "HH", 4 + len(info), 2) + info + bytes(-len(info) % 4)
        return struct.pack(bo + "IHHII", 16 + len(body), 20, 2, 1, 0) + body

    done = struct.pack("<IHHII", 20, 3, 2, 1, 0) + bytes(4)
    info = bytearray(232)
    info[2] = 1  # tcpi_retransmits
    struct.pack_into("<I", info, 80, 10)  # cwnd
    struct.pack_into("<Q", info, 208, 99)  # bytes_retrans
    raw = msg() + msg(info=bytes(info)) + msg(info=bytes(info[:104])) + msg(state=13) + done
    rows = _rows_vs_decode(raw)
    assert len(rows) == 3
    assert [(r["timer_active"], r["timer_expires_ticks"], r["retransmits"]) for r in rows] == [
        (2, 1234, 3), (2, 1234, 1), (2, 1234, 1)]
    assert (rows[1]["cwnd"], rows[1]["bytes_retrans"], rows[2]["cwnd"], rows[2]["bytes_retrans"]) == (
        10, 99, 10, None)
    assert (rows[0]["tx_queue"], rows[0]["rx_queue"], rows[0]["uid"]) == (7, 5, 1000)
    assert sockdiag.table_rows(raw, clk_tck=1000)[0]["timer_expires_ticks"] == 12345
    # a big-endian host's dump reads the same
    be = (msg(bo=">", info=bytes(232)) + struct.pack(">IHHII", 20, 3, 2, 1, 0) + bytes(4))
    (b,) = _rows_vs_decode(be, "big")
    assert (b["local_port"], b["remote_addr"], b["uid"], b["timer_expires_ticks"]) == (8080, "10.0.0.2", 1000, 1234)
    # what decode() refuses, table_rows refuses
    for bad in (raw[:50], raw[:-20], msg()[:-8] + done):
        with pytest.raises(ValueError):
            sockdiag.decode(bad)
        with pytest.raises(ValueError):
            sockdiag.table_rows(bad)
    err = struct.pack("<IHHII", 36, 2, 0, 1, 0) + struct.pack("<i", -22) + bytes(16)
    for fn in (sockdiag.decode, sockdiag.table_rows):
        with pytest.raises(OSError):
            fn(err)


_STABLE = ("family", "local_addr", "local_port", "remote_addr", "remote_port", "state", "tx_queue",
           "rx_queue", "timer_active", "retransmits", "uid", "inode", "pid", "comm", "backlog",
           "accept_queue", "cwnd", "ssthresh", "snd_mss", "total_retrans", "lost", "unacked",
           "retrans", "netns", "cookie")


def _stable(table, lb):
    mine = {lb.listen_ino} | lb.client_inos
    return sorted(tuple(getattr(s, f) for f in _STABLE) for s in table.sockets
                  if s.inode in mine or (s.local_port == lb.port and s.state == "ESTABLISHED"))


def test_table_from_sock_diag_is_the_proc_table(monkeypatch):
    """Where sock_diag answers, /proc/net/tcp is not read; the table is the one the /proc join
    gives (forced by making the fast decoder fail), and /proc/net/tcp itself agrees."""
    from ksight.sources import net_tcp

    with Loopback() as lb:
        rec = RecordingRoot(LiveRoot())
        fast, _ = _collect_settled(rec)
        assert not any(p.endswith("/net/tcp") or p.endswith("/net/tcp6") for p in rec.files)
        own = os.stat("/proc/self/ns/net").st_ino
        assert own in fast.namespaces and fast.diag_available and fast.diag_reason is None

        def broken(*a, **k):
            raise ValueError("forced")

        with monkeypatch.context() as m:
            m.setattr(sockdiag, "table_rows", broken)
            slow, _ = _collect_settled(LiveRoot())
        assert _stable(fast, lb) == _stable(slow, lb) and len(_stable(fast, lb)) == 7
        proc = {(s.inode, s.local_port, s.remote_port): s for s in net_tcp.read(LiveRoot()).sockets}
        for s in fast.sockets:
            if s.inode in lb.client_inos | {lb.listen_ino}:
                p = proc[(s.inode, s.local_port, s.remote_port)]
                assert (s.state, s.rx_queue, s.tx_queue, s.uid, s.timer_active, s.retransmits) == (
                    p.state, p.rx_queue, p.tx_queue, p.uid, p.timer_active, p.retransmits)


def test_capture_before_sock_diag_tables_still_replays_from_proc(tmp_path):
    """A capture whose index does not say "table" (made before: it holds /proc/PID/net/tcp{,6}
    too) is joined as then; a new capture replays from the dumps alone; both give the table."""
    from ksight.sources import net_tcp

    with Loopback() as lb:
        rec = RecordingRoot(LiveRoot())
        live, _ = _collect_settled(rec)
        index = json.loads(rec.files["ksight/sock_diag/index.json"])
        assert all(e.get("table") == "sock_diag" for e in index["namespaces"])
        new = tmp_path / "new"
        _write_tree(new, rec)
        for e in index["namespaces"]:
            e.pop("table")
            net_tcp.read(rec, f"proc/{e['pid']}/net")  # what older captures hold as well
        rec.files["ksight/sock_diag/index.json"] = json.dumps(index).encode()
        old = tmp_path / "old"
        _write_tree(old, rec)
        from_dumps, _ = sockets.collect(DirRoot(str(new)))
        from_proc, _ = sockets.collect(DirRoot(str(old)))
    assert _stable(from_dumps, lb) == _stable(from_proc, lb) == _stable(live, lb)
    assert len(_stable(live, lb)) == 7


def test_live_owners_later_then_only_the_states_asked():
    """Sampled as live `check` does (Plan.owners_later): no owner, no process fds read; then the
    owners of the listeners only (collect.sockets.add_owners), found in this process."""
    from ksight.collect.plan import Needs, Plan
    from ksight.collect.snapshot import take

    plan = Plan.of([Needs(sockets=True, processes=("stat",))], owners_later=True)
    with Loopback() as lb:
        snap = take(LiveRoot(), plan=plan)
        lst, cli = _mine(snap.sockets, lb)
        assert len(lst) == 1 and len(cli) == 3
        assert lst[0].pid is None and {c.pid for c in cli} == {None}
        assert snap.processes[os.getpid()].socket_inodes is None
        (again,) = sockets.add_owners(LiveRoot(), [snap], ("LISTEN",))
        lst, cli = _mine(again.sockets, lb)
        assert (lst[0].pid, lst[0].comm) == (os.getpid(), open("/proc/self/comm").read().strip())
        assert {c.pid for c in cli} == {None}
