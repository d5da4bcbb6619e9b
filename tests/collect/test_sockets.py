import json
import os
import socket
import time
from types import SimpleNamespace

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


def test_capture_round_trip(tmp_path):
    """Record a live collect, write what was read to a tree, and collect again from it."""
    with Loopback() as lb:
        rec = RecordingRoot(LiveRoot())
        table, _ = _collect_settled(rec)
        assert "ksight/sock_diag.json" in rec.files
        doc = json.loads(rec.files["ksight/sock_diag.json"])
        assert doc["available"] is True
    for path, data in rec.files.items():
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for path, target in rec.links.items():
        p = tmp_path / path
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    replay, missing = sockets.collect(DirRoot(str(tmp_path)))
    assert replay.diag_available
    (lst,), cli = _mine(replay, lb)
    assert (lst.accept_queue, lst.backlog, lst.rx_queue, lst.pid) == (3, 5, 3, os.getpid())
    assert {c.cwnd for c in cli} == {c.cwnd for c in _mine(table, lb)[1]}


def test_capture_without_diag_keeps_proc_data():
    table, missing = sockets.collect(corpus_root("procfs"))
    assert not table.diag_available and table.diag_reason == "not in capture"
    assert any(m.source == "sockets.diag" for m in missing)
    assert len(table.sockets) == 5
    assert table.by_state() == {"LISTEN": 3, "CLOSE": 2}
    assert all(s.backlog is None and s.cwnd is None for s in table.sockets)


def test_diag_failure_is_reported(monkeypatch):
    def boom():
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(sockdiag, "query_live", boom)
    with Loopback() as lb:
        rec = RecordingRoot(LiveRoot())
        table, missing = _collect_settled(rec)
        assert not table.diag_available
        assert "Operation not permitted" in table.diag_reason
        (lst,), _ = _mine(table, lb)
        assert lst.rx_queue == 3 and lst.accept_queue is None and lst.pid == os.getpid()
        # the reason is kept in the capture, so replay shows the original cause
        again = sockdiag.from_json(rec.files["ksight/sock_diag.json"])
        assert not again.available and "Operation not permitted" in again.reason


def test_malformed_capture_json(tmp_path):
    (tmp_path / "ksight").mkdir()
    (tmp_path / "ksight" / "sock_diag.json").write_text("{not json")
    r = sockdiag.collect(DirRoot(str(tmp_path)))
    assert not r.available and "malformed" in r.reason


def test_no_tcp_table(tmp_path):
    table, missing = sockets.collect(DirRoot(str(tmp_path)))
    assert table.sockets == () and missing[0].source == "sockets"


def test_short_tcp_info_gives_none():
    class Nla(dict):
        length = 4 + 104  # a 2.6-era struct tcp_info

    info = sockdiag._tcp_info(Nla(tcpi_snd_cwnd=10, tcpi_rtt=50, tcpi_delivery_rate=7,
                                  tcpi_bytes_retrans=0, tcpi_total_retrans=1))
    assert info["cwnd"] == 10 and info["rtt_us"] == 50 and info["total_retrans"] == 1
    assert info["delivery_rate"] is None and info["bytes_retrans"] is None
    assert info["lost"] is None  # not in the attribute given
