"""`capture --redact` (issue 8: 12): command lines, fd targets other than sockets/pipes/anon
inodes, peer addresses and the hostname are replaced by salted hashes, equal values equal within
one capture; the manifest says so; the capture still replays through check, show and sar."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import tarfile

import pytest

from ksight.cli.main import main
from ksight.collect import sockdiag
from ksight.sources import net_tcp
from ksight.store.capture import open_capture
from ksight.store.redact import Redactor


def _all_bytes(out: str) -> bytes:
    """Every file's bytes and every link target in a capture (directory or archive)."""
    chunks = []
    if os.path.isdir(out):
        for dirpath, dirs, files in os.walk(out):
            for n in files:
                p = os.path.join(dirpath, n)
                chunks.append(os.readlink(p).encode() if os.path.islink(p) else open(p, "rb").read())
    else:
        import zstandard

        with open(out, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r, \
                tarfile.open(fileobj=r, mode="r|") as tar:
            for m in tar:
                chunks.append(m.linkname.encode() if m.issym() else tar.extractfile(m).read()
                              if m.isfile() else b"")
    return b"\n".join(chunks)


def _outside_address() -> str | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ipaddress.ip_address(ip).is_loopback else ip


@pytest.mark.parametrize("name", ["capdir", "cap.tar.zst"])
def test_redacted_capture_hides_paths_peers_host_and_still_replays(tmp_path, name, capsys):
    marker = f"alice-secret-{os.getpid()}"
    secret = open(tmp_path / f"{marker}.txt", "w")  # an fd whose path names someone
    ip = _outside_address()
    lst = cli = srv = None
    if ip:
        lst = socket.create_server((ip, 0))
        cli = socket.create_connection(lst.getsockname()[:2])
        srv, _ = lst.accept()
        ports = (cli.getsockname()[1], lst.getsockname()[1])
    out = str(tmp_path / name)
    try:
        assert main(["capture", "-o", out, "--count", "2", "--interval", "0.2", "--redact"]) == 0
    finally:
        for s in (secret, lst, cli, srv):
            if s is not None:
                s.close()
    said = capsys.readouterr().out
    assert "redacted" in said
    raw = _all_bytes(out)
    host = socket.gethostname().encode()
    assert marker.encode() not in raw
    assert b"\n" + host + b"\n" not in b"\n" + raw + b"\n" and b'"' + host + b'"' not in raw
    cap = open_capture(out)
    assert cap.manifest["redaction"]["redacted"] is True and "salt" in cap.manifest["redaction"]["method"]
    assert cap.manifest["host"]["hostname"].startswith("host-")
    snaps = list(cap.snapshots(sources=["uptime"], processes=True, sockets=True))
    assert snaps[0].host.hostname == cap.manifest["host"]["hostname"]  # the same stand-in
    if ip:
        mine = [s for s in snaps[1].sockets.sockets
                if s.local_port in ports
                and s.state == "ESTABLISHED"] if hasattr(snaps[1].sockets, "sockets") else None
        if mine is not None:
            assert len(mine) == 2
            peers = {s.remote_addr for s in mine}
            assert len(peers) == 1 and ip not in peers  # both ends' peer is `ip`: one stand-in
            assert ipaddress.ip_address(peers.pop()) in ipaddress.ip_network("240.0.0.0/4")
            assert {s.local_addr for s in mine} == {ip}  # local addresses are kept
        assert ip.encode() not in b"".join(
            open(os.path.join(dp, f), "rb").read() for dp, _, fs in os.walk(out) for f in fs
            if f.startswith("manifest")) if os.path.isdir(out) else True
    # replay: check, show --processes --sockets, sar
    assert main(["check", "--from", out]) in (0, 1, 2, 3)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "manifest" not in err
    assert main(["show", "--from", out, "--json", "--processes", "--sockets", "meminfo"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert str(os.getpid()) in doc["processes"] and doc["sockets"] is not None
    assert main(["sar", "-B", "--from", out]) == 0
    assert "pgpgin" in capsys.readouterr().out


def test_fd_targets_kept_only_for_sockets_pipes_anon_inodes():
    r = Redactor(b"k" * 32)
    for keep in ("socket:[123]", "pipe:[9]", "anon_inode:[eventfd]"):
        assert r.link("proc/1/fd/3", keep) == keep
    a = r.link("proc/1/fd/4", "/home/alice/thesis.tex")
    assert "alice" not in a and a.startswith("redacted:")
    assert r.link("proc/7/task/8/fd/1", "/home/alice/thesis.tex") == a  # equal stays equal
    assert r.link("proc/1/fd/5", "/home/bob/x") != a
    assert r.link("proc/1/ns/net", "net:[4026531833]") == "net:[4026531833]"
    assert Redactor(b"j" * 32).link("proc/1/fd/4", "/home/alice/thesis.tex") != a  # per-capture salt


def test_cmdline_environ_and_hostname():
    r = Redactor(b"k" * 32)
    c = r.file("0000/proc/12/cmdline", b"mysql\0--password=hunter2\0")
    assert b"hunter2" not in c and c.startswith(b"redacted-") and c.endswith(b"\0")
    assert r.file("proc/2/cmdline", b"") == b""  # kernel threads stay recognisable
    assert r.file("proc/12/environ", b"HOME=/home/alice\0") is None
    h = r.file("proc/sys/kernel/hostname", b"db-prod-7.corp\n")
    assert h.decode().strip() == r.hostname("db-prod-7.corp") and b"corp" not in h
    assert r.file("proc/meminfo", b"MemTotal: 1 kB\n") == b"MemTotal: 1 kB\n"


TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0
   1: 0202000A:0016 0502000A:C350 01 00000000:00000000 00:00000000 00000000  1000        0 101 1 0 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C351 01 00000000:00000000 00:00000000 00000000  1000        0 102 1 0 20 4 30 10 -1
   3: 0202000A:0017 0502000A:C352 01 00000000:00000000 00:00000000 00000000  1000        0 103 1 0 20 4 30 10 -1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 0000000000000000FFFF00000502000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 200 1 0 20 4 30 10 -1
   1: 00000000000000000000000001000000:0016 B80D0120000000000000000001000000:C351 01 00000000:00000000 00:00000000 00000000     0        0 201 1 0 20 4 30 10 -1
"""


def test_proc_net_tcp_peers_replaced_consistently():
    r = Redactor(b"k" * 32)
    t4 = net_tcp.parse(r.file("proc/net/tcp", TCP.encode()).decode(), "proc/net/tcp")
    t6 = net_tcp.parse(r.file("proc/1/net/tcp6", TCP6.encode()).decode(), "proc/1/net/tcp6")
    s = t4.sockets
    assert [x.remote_addr for x in (s[0], s[2])] == ["0.0.0.0", "127.0.0.1"]  # kept
    assert s[1].remote_addr == s[3].remote_addr != "10.0.2.5"  # same peer, same stand-in
    assert ipaddress.ip_address(s[1].remote_addr) in ipaddress.ip_network("240.0.0.0/4")
    assert [x.local_addr for x in s] == ["127.0.0.1", "10.0.2.2", "127.0.0.1", "10.0.2.2"]
    assert [x.remote_port for x in s] == [0, 0xC350, 0xC351, 0xC352] and s[1].uid == 1000
    # the IPv4-mapped peer ::ffff:10.0.2.5 gets the IPv4 peer's stand-in
    assert t6.sockets[0].remote_addr == f"::ffff:{s[1].remote_addr}"
    assert ipaddress.ip_address(t6.sockets[1].remote_addr) in ipaddress.ip_network("2001:db8::/32")


def test_sock_diag_peers_replaced_and_dump_still_decodes():
    """A real dump of this machine's sockets (one connection to a non-loopback address of ours)."""
    ip = _outside_address()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address here")
    lst = socket.create_server((ip, 0))
    cli = socket.create_connection(lst.getsockname()[:2])
    srv, _ = lst.accept()
    ports = {cli.getsockname()[1], lst.getsockname()[1]}
    try:
        raw = sockdiag.query_raw(None)["inet"]
        if isinstance(raw, str):
            pytest.skip(f"sock_diag unavailable: {raw}")
        r = Redactor(b"k" * 32)
        before = {s.cookie: s for s in sockdiag.decode(raw)}
        after = {s.cookie: s for s in sockdiag.decode(r.file("ksight/sock_diag/1/inet4.bin", raw))}
    finally:
        for s in (cli, srv, lst):
            s.close()
    assert before.keys() == after.keys()
    ours = [c for c, s in before.items() if s.local_port in ports and s.state == "ESTABLISHED"]
    assert len(ours) == 2
    for c in before:
        b, a = before[c], after[c]
        assert (a.local_addr, a.local_port, a.remote_port, a.inode, a.uid, a.state, a.info) == \
            (b.local_addr, b.local_port, b.remote_port, b.inode, b.uid, b.state, b.info)
        ipb = ipaddress.ip_address(b.remote_addr)
        assert a.remote_addr == b.remote_addr if (ipb.is_loopback or ipb.is_unspecified) \
            else ipaddress.ip_address(a.remote_addr) in ipaddress.ip_network("240.0.0.0/4")
    assert after[ours[0]].remote_addr == after[ours[1]].remote_addr != ip
