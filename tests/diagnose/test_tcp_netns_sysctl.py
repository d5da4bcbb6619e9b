"""Sysctls per network namespace: a container's listener is judged against its own somaxconn.

A namespace this test creates gets net.core.somaxconn 37 (whatever the host has; the namespace
and its value go away with it). A listener there asks listen(1000) and never accepts; clients in
a second namespace keep connecting, so ListenOverflows moves there. The kernel caps the backlog
at the namespace's somaxconn: sock_diag's idiag_wqueue (the accept queue maximum) reads 37, an
independent witness that 37, not the host's value, applies. tcp.listen-overflow must cite 37 in
its evidence and action, live and from a capture; a capture without the namespace's values (as
made before ksight read them) falls back to ksight's own namespace's value and says so.

Root (creates network namespaces; CI is root). Bounded: 20 s of clients at most 40
connections/s, every process killed by its PID, the namespaces deleted (lab.netns.NetnsPair)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import IS_ROOT, need_tool

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not IS_ROOT, reason="needs root: creates network namespaces")]

NS_SOMAXCONN = 37

LISTENER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7100)); s.listen(1000)   # capped at the namespace's somaxconn
print("ready", flush=True)
time.sleep(float(sys.argv[2]))                # never accepts
"""

CLIENTS = r"""
import socket, sys, time
end, held = time.monotonic() + float(sys.argv[2]), []
while time.monotonic() < end and len(held) < 800:
    c = socket.socket(); c.setblocking(False)
    try:
        c.connect_ex((sys.argv[1], 7100))
    except OSError:
        pass
    held.append(c)
    time.sleep(0.025)
time.sleep(max(0.0, end - time.monotonic()))
"""


def _netns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def _ino_of(label: str) -> int:
    return int(label[len("net:["):-1])


def _check(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "ksight", "check", "--area", "tcp", "--json", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1, 2, 3), r.stderr
    return json.loads(r.stdout)


def _overflow(doc: dict, label: str) -> dict:
    got = [f for f in doc["findings"] if f["id"] == "tcp.listen-overflow"
           and (f.get("subject") or {}).get("netns") == label]
    assert got, [(f["id"], f.get("subject")) for f in doc["findings"]]
    return got[0]


def _somaxconn(f: dict) -> tuple[dict, dict | None]:
    """The somaxconn evidence, and its sysctl action (None when there is no step up to take)."""
    (e,) = [e for e in f["evidence"] if e["name"] == "net.core.somaxconn"]
    acts = [a for a in f["actions"] if a["kind"] == "sysctl" and a["name"] == "net.core.somaxconn"]
    return e, (acts[0] if acts else None)


def test_listen_overflow_cites_the_namespaces_somaxconn(tmp_path):
    from ksight.lab.netns import NetnsPair
    from ksight.store.capture import capture

    need_tool("ip", "creates the network namespaces")
    with open("/proc/sys/net/core/somaxconn") as f:
        host = int(f.read())
    want = NS_SOMAXCONN if host != NS_SOMAXCONN else NS_SOMAXCONN + 1
    with NetnsPair() as pair:
        r = pair.run(pair.b, ["sh", "-c", f"echo {want} > /proc/sys/net/core/somaxconn"],
                     timeout=10)
        assert r.returncode == 0, r.stderr
        # the namespace has its own value; the host's is untouched
        got = pair.run(pair.b, ["cat", "/proc/sys/net/core/somaxconn"], timeout=10)
        assert got.stdout.strip() == str(want)
        with open("/proc/sys/net/core/somaxconn") as f:
            assert int(f.read()) == host
        srv = pair.popen(pair.b, [sys.executable, "-c", LISTENER, pair.addr_b, "40"],
                         stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline().strip() == "ready"
        cli = pair.popen(pair.a, [sys.executable, "-c", CLIENTS, pair.addr_b, "20"])
        label = f"net:[{_netns_inode(pair.b)}]"
        cap = tmp_path / "cap"
        try:
            time.sleep(2.0)  # the accept queue is full: every further handshake overflows
            live = _check("-i", "2")
            r = subprocess.run([sys.executable, "-m", "ksight", "tcp", "--json"],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            view = json.loads(r.stdout)["overview"]
            capture(str(cap), interval=1.0, count=2, processes=True,
                    sources=["snmp", "netstat", "sockstat", "sysctl", "uptime"])
        finally:
            for p in (cli, srv):
                p.kill()
                p.wait(timeout=5)

    # `ksight tcp` shows each namespace's own values
    (nsv,) = [n for n in view["namespaces"] if n["netns"] == _ino_of(label)]
    assert nsv["sysctls"]["net.core.somaxconn"] == str(want) and nsv["sysctls_why"] is None, nsv

    f = _overflow(live, label)
    e, a = _somaxconn(f)
    assert e["value"] == want and "own value" in (e["note"] or ""), e
    assert a is not None and a["current"] == str(want), a
    assert f"nsenter -t " in a["why"] and f"net.core.somaxconn=" in a["why"], a
    # the kernel's own witness: the listener's backlog is min(1000, the namespace's somaxconn)
    (q,) = [x for x in f["evidence"] if x["name"] == "accept queue"]
    assert q["threshold"] == want, q

    # replay: the capture holds the namespace's values
    ns_files = list(cap.glob("*/ksight/netns/*/sysctl.json"))
    assert ns_files, sorted(str(p.relative_to(cap)) for p in cap.rglob("*"))[:40]
    e, a = _somaxconn(_overflow(_check("--from", str(cap)), label))
    assert e["value"] == want and a is not None and a["current"] == str(want), (e, a)

    # a capture made before ksight read them: ksight's namespace's value, and the evidence says so
    for p in ns_files:
        shutil.rmtree(p.parent)
    e, a = _somaxconn(_overflow(_check("--from", str(cap)), label))
    assert e["value"] == host and (a is None or a["current"] == str(host)), (e, a)
    assert "not read" in e["note"] and "not in this capture" in e["note"], e
