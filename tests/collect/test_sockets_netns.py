"""Sockets in a network namespace other than ksight's own (as a container's): found live and in a
capture, with the owning process, its namespace, and sock_diag's view from inside it."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys

import pytest

from ksight.collect import sockets
from ksight.errors import Unavailable
from ksight.fs import LiveRoot, open_root
from ksight.store.capture import capture, open_capture

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root: creating and entering a network namespace (unshare -n, setns)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) not installed"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="ip (iproute2) not installed"),
]

# Inside its own namespace: bring lo up, listen (backlog 7) on loopback, connect 2 clients that are
# never accepted, say the port, then wait for stdin to close. Traffic never leaves the namespace.
CHILD = r"""
import socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(7)
port = l.getsockname()[1]
cs = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
print(port, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def listener_in_netns():
    p = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, CHILD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # a selector, not select(): in a long pytest process the process scan's kept procfs fds
        # (collect/processes.py KEEP_FDS_MAX) can push a new pipe's fd past select()'s 1024
        with selectors.DefaultSelector() as sel:
            sel.register(p.stdout, selectors.EVENT_READ)
            ready = sel.select(15)
        line = p.stdout.readline() if ready else ""
        if not line.strip():
            p.kill()
            pytest.fail(f"child in a new netns did not start: {p.stderr.read() if p.poll() is not None else 'timeout'}")
        yield p.pid, int(line)
    finally:
        if p.poll() is None:
            p.kill()  # by its pid (Popen): the python that `exec` put in place of unshare and sh
        p.wait(timeout=10)
        # the namespace had no other member and no bind mount: it is gone with the process
        assert p.poll() is not None


def _check(table, pid, port, ns, comm):
    assert ns in table.namespaces, (ns, table.namespaces)
    rows = [s for s in table.sockets if s.netns == ns and s.state == "LISTEN" and s.local_port == port]
    assert len(rows) == 1, rows
    (lst,) = rows
    assert lst.local_addr == "127.0.0.1"
    assert (lst.pid, lst.comm) == (pid, comm)
    # from sock_diag asked inside that namespace (our own has no such listener)
    assert (lst.backlog, lst.accept_queue, lst.rx_queue) == (7, 2, 2)
    assert lst.cookie is not None and table.by_cookie()[lst.cookie] == lst
    clients = [s for s in table.sockets if s.netns == ns and s.remote_port == port
               and s.state == "ESTABLISHED" and s.inode]
    assert len(clients) == 2 and {c.pid for c in clients} == {pid}
    assert all(c.cwnd and c.cwnd > 0 for c in clients)


@pytest.mark.parametrize("name", ["cap", "cap.tar.zst"])
def test_socket_in_other_netns_live_and_captured(listener_in_netns, tmp_path, name):
    pid, port = listener_in_netns
    ns = os.stat(f"/proc/{pid}/ns/net").st_ino
    own = os.stat("/proc/self/ns/net").st_ino
    assert ns != own
    comm = open(f"/proc/{pid}/comm").read().strip()

    table, missing = sockets.collect(LiveRoot())
    _check(table, pid, port, ns, comm)
    assert own in table.namespaces
    assert os.stat("/proc/self/ns/net").st_ino == own  # we came back from the child's namespace

    out = str(tmp_path / name)
    capture(out, count=1, sources=["uptime"], processes=True, sockets=True)
    stored = open_root(out)
    assert len(stored.read_bytes(f"0000/ksight/sock_diag/{ns}/inet4.bin")) > 0
    assert stored.readlink(f"0000/proc/{pid}/ns/net") == f"net:[{ns}]"
    # sock_diag answered in that namespace: its dumps are the table, /proc/PID/net/tcp is not read
    index = json.loads(stored.read_bytes("0000/ksight/sock_diag/index.json"))
    (entry,) = [e for e in index["namespaces"] if e["netns"] == ns]
    assert entry["table"] == "sock_diag"
    with pytest.raises(Unavailable):
        stored.read_text(f"0000/proc/{pid}/net/tcp")
    snap = next(open_capture(out).snapshots(sources=["uptime"], processes=True, sockets=True))
    _check(snap.sockets, pid, port, ns, comm)
